module pytest-vcluster.local/runc-capfix

go 1.22
