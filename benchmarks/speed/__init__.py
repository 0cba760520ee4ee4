"""How fast pytest-vcluster is next to a kind cluster per test, measured on the offline stack.

One command measures, in one run and on the same machine:

* K: ``kind create cluster --wait 5m`` to a Ready node (median of ``--repeat-k``);
* C: a fresh vcluster, from create to a ready handle, per Kubernetes version, with the plugin's
  phase breakdown (median of ``--repeat-c``, lookahead off so each create is alone);
* R: resume of a paused vcluster to ready (median of ``--repeat-r``);
* S: ``--tests`` tests of about ``--work-seconds`` real work each in their own ``vcluster``, at
  ``-n --workers`` with the plugin's defaults (lookahead on): wall time and setup waits;
* Sk: the same test bodies with a kind cluster per test (the pytest-kind way), same workers;
* D: how many idle Ready vclusters the host holds, and host memory per idle vcluster;

then prints a table with the ratios C/K, R/C and S/Sk next to their targets, and writes it as
``speed.json`` and ``speed.png`` (the chart needs matplotlib: ``pip install -e '.[bench]'``).

The tests it runs live in ``benchmarks/suite/``; each measurement is one inner pytest run in a
temporary copy of that directory. C, R, S and D share one kind host, ``speed-host``, which this
benchmark creates first (so its creation counts in none of them) and deletes at the end. Figures
are judged here, never by timed asserts. Run it from the repository root:

    python -m benchmarks.speed                        # everything, about 25 minutes
    python -m benchmarks.speed --only K,C --versions 1.34 --repeat-k 1 --repeat-c 1
"""

# The modules, each importing only those above it:
#   stats     medians, percentiles and spreads of samples
#   stack     the offline stack's settings, the shared host's name, BenchError
#   commands  one command run to its end in a session of its own
#   kind      the kind clusters this benchmark creates and deletes
#   records   what inner runs leave: timing logs, the plugin's records file, pytest's output
#   memory    docker's memory figures, and a sampler reading the host's during S
#   suite     one inner pytest run of a temporary copy of benchmarks/suite
#   report    targets, verdicts, the printed table and how figures are shown
#   measure   the measurements K, C0, C, R, S, Sk and D
#   chart     speed.png
#   cli       options, the order of the measurements, speed.json
