"""How fast pytest-vcluster is next to a kind cluster per test and a namespace per test,
measured on the offline stack.

One command measures, in one run and on the same machine:

* K: ``kind create cluster --wait 5m`` to a Ready node (median of ``--repeat-k``);
* C: a fresh vcluster, from create to a ready handle, per Kubernetes version, with the plugin's
  phase breakdown (median of ``--repeat-c``, lookahead off so each create is alone);
* C0: the same for the newest version as it was before the speed work (the vcluster CLI and the
  chart's own values);
* Cs: C for the newest version with ``--vcluster-seeded-store`` and a state directory of its
  own: the first create makes the seed and is left out, the others start from it;
* L: C for the newest version with each fast-start lever switched off alone (the controllers
  acting as the admin, the certificates made ahead), next to C with all of them, the first
  create of each run left out (it may come before the first premade key set);
* R: resume of a paused vcluster to ready (median of ``--repeat-r``);
* S: ``--tests`` tests in their own ``vcluster``, at ``-n --workers`` with the plugin's defaults
  (lookahead and recycling on): wall time, setup waits, how many setups got a recycled
  cluster, and how long each reset took. Each test makes a namespace, a Deployment with a
  Service, a CRD with one object and a ClusterRoleBinding (through the handle's ``apply``), then
  works for about ``--work-seconds`` in all;
* S0: S with ``--vcluster-recycle=false``: every cluster is deleted after its test;
* Sw: S run twice with ``--vcluster-warm-pool`` (three clusters per worker: what a worker holds
  at once with the default lookahead of two): the first run (Sw1)
  parks its clusters on the host, the second (Sw, the one judged), started 17 s later as a
  person re-running the tests would, adopts them, so its first tests wait for a proof instead
  of a create;
* Sk: the same test bodies with a kind cluster per test (the pytest-kind way), plugin off;
* Sn: the same test bodies with a namespace per test in one kind cluster per xdist worker, made
  at the worker's first test (its creation counts in Sn) and deleted at its end, plugin off;
* D: how many idle Ready vclusters the host holds, and host memory per idle vcluster;

then prints a table with the ratios C/K (also for Cs), R/C, S/Sk and S/Sn and the setup and
reset figures of S next to their targets, and writes it as ``speed.json`` and ``speed.png``
(the chart needs matplotlib: ``pip install -e '.[bench]'``).

The tests it runs live in ``benchmarks/suite/``; each measurement is one inner pytest run in a
temporary copy of that directory. C0, C, Cs, R, S, S0 and D share one kind host, ``speed-host``,
which this benchmark creates after K, Sk and Sn (so its creation counts in none of them and its
idle load slows none of the baselines) and deletes at the end. Figures are judged here, never by
timed asserts. Run it from the repository root:

    python -m benchmarks.speed                        # everything, about 35 minutes
    python -m benchmarks.speed --only Sn              # the namespace-per-test baseline alone
    python -m benchmarks.speed --only S,S0            # S with and without recycling
    python -m benchmarks.speed --only K,C --versions 1.34 --repeat-k 1 --repeat-c 1
"""

# The modules, each importing only those above it:
#   stats     medians, percentiles and spreads of samples
#   stack     the offline stack's settings, the shared host's name, BenchError
#   commands  one command run to its end in a session of its own
#   kind      the kind clusters this benchmark creates and deletes
#   records   what inner runs leave: timing logs, the plugin's records file (setups, resets),
#             pytest's output
#   memory    docker's memory figures, and a sampler reading the host's during S
#   suite     one inner pytest run of a temporary copy of benchmarks/suite
#   report    targets, verdicts, the printed table and how figures are shown
#   measure   the measurements K, C0, C, Cs, R, S, S0, Sw, Sk, Sn and D
#   chart     speed.png
#   cli       options, the order of the measurements, speed.json
