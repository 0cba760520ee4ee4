"""pytest wiring: options, the ``vcluster`` marker, hooks and fixtures. No cluster calls here.

Fixtures:
    ``vcluster_host`` (session): the host cluster (:class:`~pytest_vcluster.host.kind.HostInfo`).
    ``vcluster`` (function): a fresh vcluster for this test.
    ``vcluster_worker`` (function): the vcluster shared by all tests of this process (xdist
    worker) that ask for the same version and values.
    ``vcluster_factory`` (function): a callable creating more vclusters in one test.
    ``vcluster_version`` and ``vcluster_values`` (function): inputs, overridable in a conftest.
    ``vcluster_settings`` (session): the resolved
    :class:`~pytest_vcluster.settings.config.Settings`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import itertools
import os
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pytest

from pytest_vcluster.core.errors import (
    CommandError,
    ConfigError,
    HostError,
    ToolNotFoundError,
    VClusterError,
)
from pytest_vcluster.core.interrupts import interrupts
from pytest_vcluster.core.progress import Progress
from pytest_vcluster.core.stats import Stats
from pytest_vcluster.core.waits import Deadline
from pytest_vcluster.diagnostics.header import header_lines, tools_line
from pytest_vcluster.pool.xdist_queue import XdistQueue, find_queue, xdist_note
from pytest_vcluster.pool.xdist_workers import leftover_hint, stop_and_wait, worker_id
from pytest_vcluster.settings.config import (
    MARKER_HELP,
    OPTIONS,
    Settings,
    TeardownMode,
    resolve_settings,
)

if TYPE_CHECKING:
    # The engine loads when a vcluster fixture is first set up, not with the plugin: pytest
    # imports this module in every run of an environment where the plugin is installed.
    from pytest_vcluster.cluster.handle import VCluster
    from pytest_vcluster.cluster.lifecycle import VClusterManager
    from pytest_vcluster.diagnostics.bundle import DiagnosticsCollector
    from pytest_vcluster.host.acquire import Host
    from pytest_vcluster.host.kind import HostInfo
    from pytest_vcluster.pool.factory import VClusterFactory, WorkerPool
    from pytest_vcluster.pool.lookahead import ClusterPool

    # Requests and markers load at collection, and only for tests that use a vcluster.
    from pytest_vcluster.pool.upcoming import UpcomingItems, UpcomingView  # noqa: F401 - StashKey
    from pytest_vcluster.settings.markers import MarkerArgs
    from pytest_vcluster.settings.request import ClusterRequest
    from pytest_vcluster.settings.versions import KubeVersion

__all__ = [
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_configure_node",
    "pytest_generate_tests",
    "pytest_report_header",
    "pytest_runtest_makereport",
    "pytest_runtest_protocol",
    "pytest_sessionfinish",
    "pytest_sessionstart",
    "pytest_terminal_summary",
    "pytest_testnodedown",
    "pytest_unconfigure",
    "vcluster",
    "vcluster_factory",
    "vcluster_host",
    "vcluster_settings",
    "vcluster_values",
    "vcluster_version",
    "vcluster_worker",
]

SETTINGS_KEY = pytest.StashKey[Settings]()
HOST_KEY = pytest.StashKey["Host"]()
RUN_ID_KEY = pytest.StashKey[str]()
MANAGERS_KEY = pytest.StashKey[list["VClusterManager"]]()
STATS_KEY = pytest.StashKey[Stats]()
REPORTS_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()
#: Per item: the cluster request resolved at collection (with its first cluster's spec).
REQUEST_KEY = pytest.StashKey["ClusterRequest"]()
#: Per run: the requests by node id, and the collected items indexed for lookahead.
REQUESTS_KEY = pytest.StashKey["dict[str, ClusterRequest]"]()
UPCOMING_KEY = pytest.StashKey["UpcomingItems"]()
#: Per run: each ``vcluster`` marker parsed once (by identity; the marker is kept alive).
MARKERS_KEY = pytest.StashKey["dict[int, tuple[pytest.Mark, MarkerArgs | ConfigError]]"]()
POOL_KEY = pytest.StashKey["ClusterPool"]()
PROGRESS_KEY = pytest.StashKey[Progress]()
CURRENT_KEY = pytest.StashKey[pytest.Item]()
#: xdist worker: its queue of items, or why it cannot be read (lookahead is then off).
XDIST_QUEUE_KEY = pytest.StashKey[XdistQueue | str]()
#: True once this run installed the signal handlers (given back at unconfigure).
INTERRUPTS_KEY = pytest.StashKey[bool]()
#: xdist controller: True once it holds the host (a worker reported a vcluster test).
HOLDING_KEY = pytest.StashKey[bool]()
#: Per item: what its failure report needs: the collector, the factory, the worker's cluster,
#: and the clusters whose JUnit properties are recorded.
DIAGNOSTICS_KEY = pytest.StashKey["DiagnosticsCollector"]()
FACTORY_KEY = pytest.StashKey["VClusterFactory"]()
WORKER_CLUSTER_KEY = pytest.StashKey["VCluster"]()
PROPERTIES_KEY = pytest.StashKey[list[str]]()
#: xdist controller: its workers (pytest-xdist's ``WorkerController`` objects).
NODES_KEY = pytest.StashKey[list[Any]]()
#: xdist controller: the workers whose stats are merged already (by object id).
MERGED_KEY = pytest.StashKey[set[int]]()

#: Fixtures whose use makes a test take part in the version matrix.
VCLUSTER_FIXTURES = frozenset(
    {"vcluster", "vcluster_worker", "vcluster_factory", "vcluster_version"}
)


# -- options and configuration --------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--vcluster-*`` options and their ``vcluster_*`` ini twins."""
    group = parser.getgroup("vcluster", "virtual Kubernetes clusters (pytest-vcluster)")
    for spec in OPTIONS:
        where = f"[ini: {spec.ini}; env: {spec.env}"
        where += f"; default: {spec.default}]" if spec.default is not None else "]"
        kwargs: dict[str, Any] = {"dest": spec.dest, "default": None, "metavar": spec.metavar}
        if spec.kind == "paths":
            kwargs["action"] = "append"
        elif spec.kind == "bool":
            # A plain flag: an optional value would swallow a following test path.
            kwargs.update(action="store_const", const="true")
            del kwargs["metavar"]
        former = spec.former_spec
        flags = [spec.flag, *([former.flag] if former else [])]
        group.addoption(*flags, help=f"{spec.help} {where}", **kwargs)
        for named in (spec, former):
            if named is None:
                continue
            help_text = spec.help if named is spec else f"Deprecated: use {spec.ini}."
            if spec.kind == "paths":
                parser.addini(named.ini, help_text, type="linelist", default=[])
            else:
                parser.addini(named.ini, help_text, type="string", default="")


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _worker_id(config: pytest.Config) -> str:
    workerinput: Mapping[str, Any] | None = getattr(config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput else "master"


def _is_xdist_controller(config: pytest.Config) -> bool:
    # What pytest-xdist itself checks: any distribution mode, however it was asked for
    # (-n, --dist with --tx), makes this process the controller.
    return not _is_xdist_worker(config) and getattr(config.option, "dist", "no") != "no"


def _new_run_id(config: pytest.Config) -> str:
    workerinput: Mapping[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput:
        for key in ("vcluster_run_id", "testrunuid"):
            if workerinput.get(key):
                return str(workerinput[key])
    return uuid.uuid4().hex


def _run_id(config: pytest.Config) -> str:
    return config.stash[RUN_ID_KEY]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Register the marker and resolve the settings once; bad values are usage errors."""
    config.addinivalue_line("markers", MARKER_HELP)
    cli = {spec.dest: config.getoption(spec.dest) for spec in OPTIONS}
    ini = {
        named.ini: config.getini(named.ini)
        for spec in OPTIONS
        for named in (spec, spec.former_spec)
        if named is not None
    }
    ini_dir = config.inipath.parent if config.inipath else config.rootpath
    try:
        settings = resolve_settings(
            cli, ini, os.environ, cli_dir=config.invocation_params.dir, ini_dir=ini_dir
        )
    except ConfigError as exc:
        raise pytest.UsageError(f"pytest-vcluster: {exc}") from None
    config.stash[SETTINGS_KEY] = settings
    config.stash[STATS_KEY] = Stats()
    config.stash[RUN_ID_KEY] = _new_run_id(config)
    config.stash[MANAGERS_KEY] = []
    config.stash[PROGRESS_KEY] = Progress(_terminal_writer(config))
    if _is_xdist_controller(config):
        config.pluginmanager.register(_XdistController(config), "vcluster-xdist-controller")


def _host(config: pytest.Config) -> Host:
    """The host of this run, made on first use: a run without vclusters never loads it."""
    host = config.stash.get(HOST_KEY, None)
    if host is not None:
        return host
    # The first use loads the API client and the cluster code (a second or so). A Ctrl-C
    # in the middle of an import leaves half-made modules behind, and the teardown's own
    # import of them fails ("cannot import name 'Configuration' from 'kubernetes.client'"),
    # so the loading finishes first and the interrupt follows.
    with interrupts.deferred():
        for module in _CLUSTER_MODULES:
            importlib.import_module(module)
        from pytest_vcluster.host.acquire import make_host  # noqa: PLC0415 - see TYPE_CHECKING

        settings = config.stash[SETTINGS_KEY]
        host = config.stash[HOST_KEY] = make_host(
            settings,
            state_root=_state_root(settings),
            run_id=_run_id(config),
            worker=_worker_id(config),
            progress=config.stash[PROGRESS_KEY],
        )
    return host


def _state_root(settings: Settings) -> Path:
    from pytest_vcluster.host.locks import default_state_root  # noqa: PLC0415 - see _host

    return settings.state_dir or default_state_root(os.environ)


#: What a run that uses vclusters imports, all at its first use of the host (see _host).
_CLUSTER_MODULES = (
    "pytest_vcluster.host.acquire",
    "pytest_vcluster.host.images",
    "pytest_vcluster.cluster.lifecycle",
    "pytest_vcluster.pool.lookahead",
    "pytest_vcluster.pool.factory",
    "pytest_vcluster.diagnostics.bundle",
)


def _take_signals(config: pytest.Config) -> None:
    """Take over SIGINT and SIGTERM for this run, once: when it first uses a vcluster.

    A run that never asks for one keeps the handlers it had (a SIGTERM stays a SIGTERM), and
    :func:`pytest_unconfigure` gives them back.
    """
    if config.stash.get(INTERRUPTS_KEY, False):
        return

    def stop_run(reason: str) -> None:
        session = getattr(config, "_vcluster_session", None)
        if session is not None:
            session.shouldstop = reason

    controller = config.pluginmanager.get_plugin("vcluster-xdist-controller")
    managers = config.stash[MANAGERS_KEY]

    def leftovers() -> list[str]:
        if isinstance(controller, _XdistController):
            return controller.leftovers()
        return [line for manager in managers for line in manager.leftovers()]

    config.stash[INTERRUPTS_KEY] = interrupts.install(stop_run=stop_run, leftovers=leftovers)


class _XdistController:
    """xdist controller only: after an interrupt, wait for the workers' teardown before
    pytest-xdist shuts them down (see :mod:`~pytest_vcluster.pool.xdist_workers`)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.waiting_for: list[str] | None = None

    def leftovers(self) -> list[str]:
        if self.waiting_for is None:
            return []
        return leftover_hint(self.config.stash[SETTINGS_KEY], self.waiting_for)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """At a worker's first vcluster test: hold the host for the workers.

        Until then the run may not use vclusters at all, and the host is none of its business.
        """
        config = self.config
        if not getattr(report, "vcluster", False) or config.stash.get(HOLDING_KEY, False):
            return
        config.stash[HOLDING_KEY] = True
        try:
            # The workers hold it too; the controller's lease keeps it between them. A Ctrl-C
            # now (the first test just started) waits for the hold, which the end releases.
            with interrupts.deferred():
                _host(config).hold()
        except HostError as exc:
            config.stash[STATS_KEY].note(f"the xdist controller could not hold the host: {exc}")

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Before pytest-xdist's own (which stops the workers): wait for them to finish."""
        nodes = session.config.stash.get(NODES_KEY, [])
        if not interrupts.interrupted or interrupts.abandon.is_set() or not nodes:
            return
        settings = session.config.stash[SETTINGS_KEY]
        deadline = Deadline(settings.delete_timeout, stop=interrupts.abandon)
        self.waiting_for = [worker_id(node) for node in nodes]
        progress = session.config.stash[PROGRESS_KEY]
        with interrupts.shielded(), progress.waiting("the xdist workers to tear down"):
            still = stop_and_wait(nodes, deadline)
        self.waiting_for = still if still else None
        for node in nodes:
            _merge_worker_stats(session.config, node)
        if still and not interrupts.abandon.is_set():
            progress.note(
                f"xdist worker(s) {', '.join(still)} still tearing down after "
                f"{settings.delete_timeout:g}s: pytest-xdist stops them now"
            )


def _terminal_writer(config: pytest.Config) -> Callable[[str], None] | None:
    """Where progress lines go: the terminal, unless quiet or an xdist worker (no terminal)."""
    if _is_xdist_worker(config) or config.get_verbosity() < 0:
        return None

    def write(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        # During setup pytest captures fd 1, the terminal included: step out of it, as
        # pytest's own live logging does.
        capture = config.pluginmanager.get_plugin("capturemanager")
        paused = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
        with paused:
            reporter.write_line(line)

    return write


def pytest_unconfigure(config: pytest.Config) -> None:
    """Give SIGINT and SIGTERM back, if this run took them."""
    if config.stash.get(INTERRUPTS_KEY, False):
        config.stash[INTERRUPTS_KEY] = False
        interrupts.uninstall()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: object) -> None:
    """xdist controller: every worker labels its clusters with the controller's run id."""
    workerinput: dict[str, Any] | None = getattr(node, "workerinput", None)
    config: pytest.Config | None = getattr(node, "config", None)
    if workerinput is not None and config is not None:
        workerinput["vcluster_run_id"] = config.stash[RUN_ID_KEY]
        config.stash.setdefault(NODES_KEY, []).append(node)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Keep the session: a signal asks it to stop after the current test.

    An xdist controller takes the signals now: it never sees its workers' fixtures, and a
    Ctrl-C while a worker creates its first cluster must still wait for that worker's
    teardown instead of letting pytest-xdist stop it halfway.
    """
    config = session.config
    config._vcluster_session = session  # type: ignore[attr-defined]
    if _is_xdist_controller(config) and not config.option.collectonly:
        _take_signals(config)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Show the host and the settings in effect (the tools' versions end the summary)."""
    lines = header_lines(config.stash[SETTINGS_KEY])
    if _is_xdist_controller(config):
        note = xdist_note()
        if note:
            lines.append(note)
    return lines


# -- collection: marker validation and the version matrix ----------------------------------


def _marker_args(config: pytest.Config, marker: pytest.Mark, base_dir: Any) -> MarkerArgs:  # noqa: ANN401 - a path
    """The marker's arguments, parsed once per marker; raises :class:`ConfigError`."""
    from pytest_vcluster.settings.markers import parse_marker  # noqa: PLC0415 - see TYPE_CHECKING

    parsed = config.stash.setdefault(MARKERS_KEY, {})
    found = parsed.get(id(marker))
    if found is None:
        try:
            result: MarkerArgs | ConfigError = parse_marker(marker.args, marker.kwargs, base_dir)
        except ConfigError as exc:
            result = exc
        parsed[id(marker)] = found = (marker, result)
    if isinstance(found[1], ConfigError):
        raise found[1]
    return found[1]


def _check_served_versions(args: MarkerArgs, settings: Settings) -> None:
    from pytest_vcluster.settings.versions import check_served  # noqa: PLC0415

    for version in (*([args.version] if args.version else []), *args.versions):
        option = "vcluster(version=...)" if version == args.version else "vcluster(versions=...)"
        check_served(version, settings.version_map, option)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Validate the ``vcluster`` marker and parametrize over versions."""
    definition = metafunc.definition
    marker = definition.get_closest_marker("vcluster")
    settings = metafunc.config.stash[SETTINGS_KEY]
    error: ConfigError | None = None
    args: MarkerArgs | None = None
    if marker is not None:
        try:
            args = _marker_args(metafunc.config, marker, definition.path.parent)
            _check_served_versions(args, settings)
        except ConfigError as exc:
            error = exc
    if error is not None:
        # A collection error without traceback: names the test and the argument, and works
        # the same under xdist (a UsageError raised in a worker would crash it instead).
        pytest.fail(f"usage error in {definition.nodeid}: {error}", pytrace=False)
    if not VCLUSTER_FIXTURES.intersection(metafunc.fixturenames):
        return
    if args is not None and args.version is not None:
        return
    versions = (args.versions if args is not None else ()) or settings.versions
    if versions:
        metafunc.parametrize(
            "vcluster_version",
            list(versions),
            ids=[version.test_id for version in versions],
            indirect=True,
        )


def _values_fixture_is_default(fixturedef: pytest.FixtureDef[Any]) -> bool:
    return getattr(fixturedef.func, "__module__", None) == __name__


def _predict_values(item: pytest.Item) -> Mapping[str, Any] | None:
    """The item's ``vcluster_values`` when they can be known before setup, else ``None``.

    The plugin's own fixture gives ``{}``; an override that takes no arguments and returns
    (not yields) a mapping is called now. When setup finds other values, the test's request
    is built again from them (and nothing prepared ahead fits it).
    """
    info = getattr(item, "_fixtureinfo", None)
    definitions: Sequence[pytest.FixtureDef[Any]] = (
        info.name2fixturedefs.get("vcluster_values", ()) if info else ()
    )
    if not definitions:
        return {}
    fixturedef = definitions[-1]
    if _values_fixture_is_default(fixturedef):
        return {}
    func = fixturedef.func
    if fixturedef.argnames or inspect.isgeneratorfunction(func):
        return None
    try:
        predicted = func()
    except Exception:  # noqa: BLE001 - unpredictable values: this test is not prepared ahead
        return None
    return predicted if isinstance(predicted, Mapping) else None


def _cluster_request(item: pytest.Item) -> ClusterRequest:
    """Everything the item asks of its clusters, from its marker (parsed once), its matrix
    version and its predicted ``vcluster_values``, with its first cluster's spec."""
    from pytest_vcluster.settings.markers import MarkerArgs  # noqa: PLC0415 - see TYPE_CHECKING
    from pytest_vcluster.settings.request import ClusterRequest  # noqa: PLC0415
    from pytest_vcluster.settings.versions import KubeVersion  # noqa: PLC0415

    config = item.config
    marker = item.get_closest_marker("vcluster")
    args = _marker_args(config, marker, item.path.parent) if marker else MarkerArgs()
    callspec = getattr(item, "callspec", None)
    param = callspec.params.get("vcluster_version") if callspec is not None else None
    version = param if isinstance(param, KubeVersion) else args.version
    fixturenames = getattr(item, "fixturenames", ())
    # A test marked skip never sets its fixtures up: its spec would be built for nothing.
    fresh = "vcluster" in fixturenames and not item.get_closest_marker("skip")
    request = ClusterRequest(
        nodeid=item.nodeid,
        name=item.name,
        marker=args,
        version=version,
        extra_values=_predict_values(item) if fresh else {},
    )
    if not fresh:
        return request
    try:
        return request.resolved(config.stash[SETTINGS_KEY])
    except ConfigError:
        return request  # not prepared ahead; the test's setup reports the error


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Resolve each test's cluster request once, and index the items for lookahead."""
    requests: dict[str, ClusterRequest] = {}
    for item in items:
        if not VCLUSTER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            continue
        try:
            request = _cluster_request(item)
        except ConfigError:
            continue  # reported as a collection error by pytest_generate_tests already
        item.stash[REQUEST_KEY] = requests[item.nodeid] = request
    config.stash[REQUESTS_KEY] = requests
    if requests:
        from pytest_vcluster.pool.upcoming import UpcomingItems  # noqa: PLC0415

        config.stash[UPCOMING_KEY] = UpcomingItems(
            [
                (item.nodeid, found.first if (found := requests.get(item.nodeid)) else None)
                for item in items
            ]
        )


def _xdist_queue(config: pytest.Config) -> XdistQueue | str:
    """This worker's queue, looked up once, or why it cannot be read."""
    queue = config.stash.get(XDIST_QUEUE_KEY, None)
    if queue is None:
        queue = config.stash[XDIST_QUEUE_KEY] = find_queue(config.pluginmanager.get_plugins())
        if isinstance(queue, str):
            config.stash[STATS_KEY].note(f"lookahead off in {_worker_id(config)}: {queue}")
    return queue


def _upcoming(session: pytest.Session) -> UpcomingView | list[Any]:
    """The tests this process runs next, the current one first, with their specs."""
    config = session.config
    current = config.stash.get(CURRENT_KEY, None)
    items = config.stash.get(UPCOMING_KEY, None)
    if current is None or items is None:
        return []
    if _is_xdist_worker(config):
        queue = _xdist_queue(config)
        if isinstance(queue, str):
            return []
        return items.queued(current.nodeid, queue.pending())
    return items.after(current.nodeid)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Before each test: let the pool prepare clusters for the tests after it."""
    del nextitem  # the xdist queue (or the item list) says more than one item ahead
    item.config.stash[CURRENT_KEY] = item
    pool = item.config.stash.get(POOL_KEY, None)
    if pool is not None:
        pool.plan()


# -- reports, summary, xdist -----------------------------------------------------------------


def _clusters(item: pytest.Item) -> list[VCluster]:
    """The clusters this test has now (a factory forgets its own once torn down)."""
    factory = item.stash.get(FACTORY_KEY, None)
    worker = item.stash.get(WORKER_CLUSTER_KEY, None)
    return [*([worker] if worker else []), *(factory.created if factory else [])]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Keep each phase's report on the item, so teardown knows whether the test failed;
    record each cluster's JUnit properties; add diagnostics to a failed setup or call."""
    clusters = _clusters(item)
    # Before the report is made: it copies the item's properties (JUnit XML reads them from
    # the teardown report, when the factory has forgotten its clusters already).
    recorded = item.stash.setdefault(PROPERTIES_KEY, [])
    if clusters:
        from pytest_vcluster.diagnostics.bundle import junit_properties  # noqa: PLC0415

        for handle in clusters:
            if handle.name not in recorded:
                item.user_properties += junit_properties(handle, len(recorded))
                recorded.append(handle.name)
    hidden = _hide_plugin_frames(item, call)
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if hidden and report.failed and call.excinfo is not None:
        # Nothing but the plugin's own frames: the message alone, as pytest.fail(pytrace=False).
        report.longrepr = (
            f"{call.excinfo.typename}: {call.excinfo.value}\n"
            "(the plugin's traceback: run with --full-trace or -vv)"
        )
    item.stash.setdefault(REPORTS_KEY, {})[report.when] = report
    if report.when == "setup" and REQUEST_KEY in item.stash:
        # Read by the xdist controller (reports travel with their attributes).
        report.vcluster = True  # type: ignore[attr-defined]
    collector = item.stash.get(DIAGNOSTICS_KEY, None)
    # The call's report comes before the teardown: the clusters still exist. After Ctrl-C
    # the user wants the run to end, not diagnostics.
    wanted = report.failed and report.when in ("setup", "call") and not interrupts.interrupted
    if wanted and collector is not None:
        error = call.excinfo.value if call.excinfo else None
        report.sections += collector.sections(item.nodeid, clusters, error)


def _package_dir(name: str) -> str:
    # Found without importing it: the API client is heavy.
    spec = importlib.util.find_spec(name)
    origin = spec.origin if spec is not None and spec.origin else ""
    return os.path.dirname(origin) + os.sep


@functools.cache
def _internal_roots() -> tuple[str, ...]:
    """Frames a plugin error is shown without: the plugin's own and the API client's below."""
    return tuple(_package_dir(name) for name in ("pytest_vcluster", "kubernetes", "urllib3"))


@functools.cache
def _pytest_roots() -> tuple[str, ...]:
    """pytest's and pluggy's frames, which pytest hides itself."""
    return tuple(_package_dir(name) for name in ("_pytest", "pluggy"))


def _hide_plugin_frames(item: pytest.Item, call: pytest.CallInfo[None]) -> bool:
    """Cut the plugin's frames from a plugin error's traceback, as pytest does its own.

    The frames are unlinked from the exception's traceback itself: pytest rebuilds the
    traceback from the test function's frame on, so a filtered copy would not last. Returns
    True when no frame but pytest's is left (the report then shows the message alone). With
    ``--full-trace``, ``-vv`` or ``--pdb`` the whole traceback and the cause chain stay.
    """
    excinfo = call.excinfo
    if excinfo is None or not isinstance(excinfo.value, VClusterError):
        return False
    config = item.config
    # A debugger (--pdb) gets every frame: it walks the same traceback object.
    if config.getoption("fulltrace", False) or config.getoption("usepdb", False):
        return False
    if config.get_verbosity() >= 2:
        return False
    kept: list[TracebackType] = []
    frame: TracebackType | None = excinfo.tb
    while frame is not None:
        code_path = frame.tb_frame.f_code.co_filename
        hidden = "__tracebackhide__" in frame.tb_frame.f_locals
        if not hidden and not code_path.startswith(_internal_roots()):
            kept.append(frame)
        frame = frame.tb_next
    # The causes (the API's exception, a subprocess error) are in the message already.
    excinfo.value.__suppress_context__ = True
    excinfo.value.__cause__ = None
    if not any(not f.tb_frame.f_code.co_filename.startswith(_pytest_roots()) for f in kept):
        return True
    for before, after in itertools.pairwise(kept):
        before.tb_next = after
    kept[-1].tb_next = None
    excinfo.traceback = type(excinfo.traceback)(kept[0])
    return False


def _failed(item: pytest.Item) -> bool:
    return any(report.failed for report in item.stash.get(REPORTS_KEY, {}).values())


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Workers hand their stats to the controller; the controller removes the shared host.

    Runs last, after pytest has torn down the session fixtures (the pool waits there for
    every background teardown), so the stats are complete.
    """
    config = session.config
    stats = config.stash.get(STATS_KEY, None)
    settings = config.stash.get(SETTINGS_KEY, None)
    if _is_xdist_worker(config):
        if stats is not None:
            config.workeroutput["vcluster_stats"] = stats.to_dict()  # type: ignore[attr-defined]
        return
    if settings is None or config.option.collectonly:
        return
    if _is_xdist_controller(config) and config.stash.get(HOLDING_KEY, False):
        with interrupts.shielded():
            _host(config).release()
    if settings.records is not None and stats is not None:
        try:
            stats.write(settings.records)
        except OSError as exc:
            # The run's outcome stands; only the file is missing, and the summary says so.
            stats.note(f"cannot write --vcluster-records to {settings.records}: {exc}")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """xdist controller: merge a finished worker's stats."""
    config: pytest.Config | None = getattr(node, "config", None)
    if config is not None:
        _merge_worker_stats(config, node)


def _merge_worker_stats(config: pytest.Config, node: object) -> None:
    """Merge a worker's stats once: after an interrupt pytest-xdist no longer reports a
    finished worker, and the controller merges what it sent itself."""
    output: dict[str, Any] = getattr(node, "workeroutput", None) or {}
    merged = config.stash.setdefault(MERGED_KEY, set())
    if output.get("vcluster_stats") and id(node) not in merged:
        merged.add(id(node))
        config.stash[STATS_KEY].merge(output["vcluster_stats"])


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """List vclusters created, resumed, paused, deleted and their ready times."""
    stats = config.stash.get(STATS_KEY, None)
    # An interrupted xdist run says so even when its workers had not made anything yet.
    interrupted_workers = interrupts.interrupted and bool(config.stash.get(NODES_KEY, None))
    if stats is None or (stats.empty and not interrupted_workers):
        return
    terminalreporter.write_sep("-", "pytest-vcluster")
    host = config.stash.get(HOST_KEY, None)
    host_line = host.summary_line() if host is not None else None
    if host_line:
        terminalreporter.write_line(host_line)
    terminalreporter.write_line(tools_line(config.stash[SETTINGS_KEY]))
    for line in stats.summary_lines():
        terminalreporter.write_line(line)
    if interrupts.interrupted:
        how = (
            "stopped waiting (the list of what is left was printed above)"
            if interrupts.abandon.is_set()
            else "tore down every vcluster this run made, each by its teardown mode"
        )
        terminalreporter.write_line(f"interrupted by {interrupts.signal_name}: {how}")


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def vcluster_settings(pytestconfig: pytest.Config) -> Settings:
    """The settings in effect (command line > ini > environment > default)."""
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def vcluster_host(pytestconfig: pytest.Config) -> Iterator[HostInfo]:
    """The host cluster: a kind cluster shared by all workers, or the existing cluster.

    When it cannot be had, every test that needs it errors with the same one line: the
    error is raised once per process and pytest re-raises it for the others.
    """
    from pytest_vcluster.host.images import ImageLoadError  # noqa: PLC0415 - see TYPE_CHECKING

    _take_signals(pytestconfig)
    host = _host(pytestconfig)
    failure: str | None = None
    try:
        info = host.acquire()
    except (HostError, ToolNotFoundError, CommandError, ImageLoadError) as exc:
        failure = f"pytest-vcluster: {exc}"
    if failure is not None:
        # Outside the except block, so the report is this one line and not a chain.
        pytest.fail(failure, pytrace=False)
    try:
        yield info
    finally:
        with interrupts.shielded():
            host.release()


@pytest.fixture(scope="session")
def _vcluster_manager(
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
    vcluster_settings: Settings,
    vcluster_host: HostInfo,
) -> Iterator[VClusterManager]:
    from pytest_vcluster.cluster.lifecycle import VClusterManager  # noqa: PLC0415
    from pytest_vcluster.cluster.seed import SeedStore  # noqa: PLC0415

    workdir = tmp_path_factory.mktemp("vcluster")
    workdir.chmod(0o700)
    seeds = vcluster_settings.seeded_store
    manager = VClusterManager(
        settings=vcluster_settings,
        host=vcluster_host,
        run_id=_run_id(pytestconfig),
        worker=_worker_id(pytestconfig),
        workdir=workdir,
        stats=pytestconfig.stash[STATS_KEY],
        seeds=SeedStore(_state_root(vcluster_settings) / "seeds") if seeds else None,
    )
    managers = pytestconfig.stash[MANAGERS_KEY]
    managers.append(manager)
    try:
        # One process per run reaps (under xdist the first worker); it is idempotent anyway.
        reaped = manager.start(
            reap_leftovers=vcluster_settings.reap and _worker_id(pytestconfig) in ("master", "gw0")
        )
        if reaped is not None and (reaped.removed or reaped.preserved or reaped.errors):
            pytestconfig.stash[STATS_KEY].note(reaped.summary())
        yield manager
    finally:
        with interrupts.shielded():
            manager.close()
        managers.remove(manager)


@pytest.fixture(scope="session")
def _vcluster_diagnostics(
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
    vcluster_settings: Settings,
    _vcluster_manager: VClusterManager,
) -> DiagnosticsCollector:
    from pytest_vcluster.diagnostics.bundle import DiagnosticsCollector  # noqa: PLC0415

    root = vcluster_settings.diagnostics_dir
    return DiagnosticsCollector(
        host_api=lambda: _vcluster_manager.host_api,
        root=root or tmp_path_factory.getbasetemp() / "vcluster-diagnostics",
        run_id=_run_id(pytestconfig),
        worker=_worker_id(pytestconfig),
    )


@pytest.fixture(scope="session")
def _vcluster_pool(
    request: pytest.FixtureRequest,
    vcluster_settings: Settings,
    _vcluster_manager: VClusterManager,
) -> Iterator[ClusterPool]:
    from pytest_vcluster.pool.lookahead import ClusterPool  # noqa: PLC0415

    _take_signals(request.config)
    session = request.session
    pool = ClusterPool(
        _vcluster_manager,
        lambda: _upcoming(session),
        lookahead=vcluster_settings.lookahead,
        parallel=vcluster_settings.parallel_creates,
        progress=request.config.stash[PROGRESS_KEY],
        teardown_of=lambda nodeid: _teardown_mode_of(session, nodeid),
    )
    request.config.stash[POOL_KEY] = pool
    pool.plan()
    yield pool
    del request.config.stash[POOL_KEY]
    pool.close()


@pytest.fixture(scope="session")
def _vcluster_worker_pool(
    request: pytest.FixtureRequest,
    pytestconfig: pytest.Config,
    vcluster_settings: Settings,
    _vcluster_pool: ClusterPool,
) -> Iterator[WorkerPool]:
    from pytest_vcluster.pool.factory import WorkerPool  # noqa: PLC0415

    pool = WorkerPool(
        _vcluster_pool, vcluster_settings, _worker_id(pytestconfig), pytestconfig.stash[STATS_KEY]
    )
    yield pool
    pool.close(failed=request.session.testsfailed > 0)


def _teardown_mode_of(session: pytest.Session, nodeid: str) -> TeardownMode:
    """The teardown mode of the test ``nodeid`` (its marker's, else the setting)."""
    settings = session.config.stash[SETTINGS_KEY]
    found = session.config.stash.get(REQUESTS_KEY, {}).get(nodeid)
    return found.teardown_mode(settings) if found is not None else settings.teardown


def _request(request: pytest.FixtureRequest) -> ClusterRequest:
    # Resolved at collection (pytest_collection_modifyitems); a test collected in an unusual
    # way (a plugin adding items later) is resolved now.
    item = request.node
    found = item.stash.get(REQUEST_KEY, None)
    return found if found is not None else _cluster_request(item)


@pytest.fixture
def vcluster_version(request: pytest.FixtureRequest) -> KubeVersion | None:
    """The Kubernetes version for this test: matrix parameter, else marker, else chart default."""
    param: KubeVersion | None = getattr(request, "param", None)
    return param if param is not None else _request(request).version


#: How errors name an override of the ``vcluster_values`` fixture.
_VALUES_FIXTURE = "the vcluster_values fixture"


@pytest.fixture
def vcluster_values() -> Mapping[str, Any]:
    """Extra chart values for this test's vclusters (below the marker's); override to set."""
    return {}


@pytest.fixture
def vcluster_factory(
    request: pytest.FixtureRequest,
    pytestconfig: pytest.Config,
    vcluster_settings: Settings,
    vcluster_version: KubeVersion | None,
    vcluster_values: Mapping[str, Any],
    _vcluster_pool: ClusterPool,
    _vcluster_diagnostics: DiagnosticsCollector,
) -> Iterator[VClusterFactory]:
    """Create extra vclusters in one test: ``vcluster_factory(version=..., values=...)``."""
    from pytest_vcluster.pool.factory import VClusterFactory  # noqa: PLC0415
    from pytest_vcluster.settings.markers import check_values  # noqa: PLC0415

    cluster_request = _request(request).at_setup(
        vcluster_version, check_values(vcluster_values, _VALUES_FIXTURE) or {}
    )
    factory = VClusterFactory(
        pool=_vcluster_pool,
        settings=vcluster_settings,
        request=cluster_request,
        worker=_worker_id(pytestconfig),
        stats=pytestconfig.stash[STATS_KEY],
    )
    request.node.stash[FACTORY_KEY] = factory
    request.node.stash[DIAGNOSTICS_KEY] = _vcluster_diagnostics
    yield factory
    factory.close(failed=_failed(request.node))


@pytest.fixture
def vcluster(vcluster_factory: VClusterFactory) -> VCluster:
    """A pristine vcluster for this test (new, or recycled through a proven reset), torn
    down or recycled after it (``--vcluster-teardown``, ``--vcluster-recycle``)."""
    return vcluster_factory()


@pytest.fixture
def vcluster_worker(
    request: pytest.FixtureRequest,
    vcluster_version: KubeVersion | None,
    vcluster_values: Mapping[str, Any],
    _vcluster_worker_pool: WorkerPool,
    _vcluster_diagnostics: DiagnosticsCollector,
) -> VCluster:
    """The vcluster this process (xdist worker) shares between tests of the same spec."""
    from pytest_vcluster.settings.markers import check_values  # noqa: PLC0415

    cluster_request = _request(request).at_setup(
        vcluster_version, check_values(vcluster_values, _VALUES_FIXTURE) or {}
    )
    request.node.stash[DIAGNOSTICS_KEY] = _vcluster_diagnostics
    handle = _vcluster_worker_pool.get(cluster_request)
    request.node.stash[WORKER_CLUSTER_KEY] = handle
    return handle
