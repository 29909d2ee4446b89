"""``lq``: the likelihood-quality toolkit's command line."""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import sys
from datetime import datetime
from pathlib import Path

from experiments.config import CONFIGS, load_config, parse_override, run_options
from models.errors import InputError

# name -> (what it does, module, config class); modules are imported only when run (they import torch)
EXPERIMENTS = {
    "modes": ("greedy, beam, exact, length-conditional modes and samples of the shipped Bible de->en model on "
              "test verses; report and figures (default)", "experiments.modes", "ModesConfig"),
    "contamination": ("fine-tune the shipped model on training data with a share eps of empty / copied targets; "
                      "degenerate exact modes vs eps, against the closed form", "experiments.contamination",
                      "ContaminationConfig"),
    "conditional": ("conditional beam search on p(y | x, not degenerate and of plausible length) with a learned "
                    "classifier, against beam search, its hard-constraint variants and the exact conditional mode, on "
                    "the shipped MT model and SmolLM2 (chat)", "experiments.conditional", "ConditionalConfig"),
    "demo": ("exact vs beam search on SmolLM2-135M-Instruct, 5 short prompts", "experiments.demo", "DemoConfig"),
    "hso-perplexity": ("streaming perplexity of SmolLM2 and Gemma-3 with no adaptation, hidden-state optimisation and "
                       "dynamic evaluation on Bible, Shakespeare and Wikipedia text", "experiments.hso_perplexity",
                       "HSOPerplexityConfig"),
    "hso-fewshot": ("k-shot classification (Reuters R8, election tweets, chatterbot topics) with SmolLM2 and Gemma-3: "
                    "ICL, ICL + HSO on the demonstrations, contextual calibration, a linear head",
                    "experiments.hso_fewshot", "HSOFewShotConfig"),
    "recurrence": ("perplexity of SmolLM2 with a trained recurrence module (windows 64-256 and memory) against "
                   "sliding windows, disjoint windows and the full context, at equal memory",
                   "experiments.recurrence", "RecurrenceConfig"),
    "nar": ("RUM-SUNDAE (non-autoregressive, from a masked LM) against the same network randomly initialised, "
            "unroll = 1, an autoregressive Marian model and copying, on KJV -> BBE: BLEU vs refinement steps, "
            "repetition, speed-ups, the AR model's likelihood of every system's outputs", "experiments.nar",
            "NARRunConfig"),
}
DEFAULT_EXPERIMENT = "modes"


def _run(args: argparse.Namespace) -> None:
    name = args.experiment or DEFAULT_EXPERIMENT
    if name not in EXPERIMENTS:
        raise InputError(f"unknown experiment {name!r}; `lq list` shows: {', '.join(EXPERIMENTS)}")
    overrides = dict(parse_override(item) for item in args.set)
    out = Path(args.out) if args.out else Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
    _, module_name, config_class = EXPERIMENTS[name]
    module = importlib.import_module(module_name)
    config = Path(args.config) if args.config else None
    cfg = load_config(getattr(module, config_class), name, config, overrides)
    on_ray = run_options(name, config, overrides) | {k: v for k, v in [("threads", args.threads), ("ray", args.ray), (
        "ray_workers", args.ray_workers), ("ray_threads", args.ray_threads)] if v is not None}
    if on_ray.get("ray") is None:
        if "threads" in on_ray:
            import torch

            threads = on_ray["threads"]
            if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
                raise InputError(f"threads must be a positive integer, got {threads!r}")
            torch.set_num_threads(threads)
        module.main(cfg, out, limit=args.limit, argv=sys.argv)
        return
    from experiments.distributed import RayOptions

    if "ray" not in inspect.signature(module.main).parameters:
        raise InputError(f"the {name} experiment does not run on Ray; drop --ray (and ray from its config)")
    module.main(cfg, out, limit=args.limit, argv=sys.argv, ray=RayOptions.from_keys(on_ray))


def _run_dir(path: str) -> Path:
    run_dir = Path(path)
    if not (run_dir / "rows.jsonl").is_file() and not (run_dir / "rows.parquet").is_file():
        raise InputError(f"{run_dir} is not a run directory (no rows.jsonl or rows.parquet)")
    return run_dir


def _figures(args: argparse.Namespace) -> None:
    from experiments.report import render_figures

    log = logging.getLogger("figures.render")  # says which figure it writes or skips, and why
    log.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stdout)
    log.addHandler(handler)
    try:
        paths = render_figures(_run_dir(args.run_dir))
    finally:
        log.removeHandler(handler)
    if not paths:
        raise InputError(f"no figure applies to the rows of {args.run_dir} (the reasons are above)")
    for path in paths:
        print(path)


def _report(args: argparse.Namespace) -> None:
    from experiments.report import write_report

    print(write_report(_run_dir(args.run_dir)).read_text())


def _paper(args: argparse.Namespace) -> None:
    from experiments.paper import build

    build(Path(args.results) if args.results else None, pdf=not args.no_pdf)


def _train(args: argparse.Namespace) -> None:
    overrides = dict(parse_override(item) for item in args.set)
    config = Path(args.config) if args.config else None
    if args.what == "classifier":
        from experiments import conditional

        if args.out:
            raise InputError("lq train classifier keeps classifiers in $LQ_CACHE/classifiers; --out is for mt")
        conditional.train_classifiers(load_config(conditional.ConditionalConfig, "conditional", config, overrides),
                                      limit=args.limit)
        return
    if args.what == "nar":
        from experiments import train_nar

        cfg_n = load_config(train_nar.TrainNARConfig, "train_nar", config, overrides)
        train_nar.main(cfg_n, Path(args.out) if args.out else None, limit=args.limit, argv=sys.argv)
        return
    if args.what == "recurrence":
        from experiments import train_recurrence

        cfg_r = load_config(train_recurrence.TrainRecurrenceConfig, "train_recurrence", config, overrides)
        train_recurrence.main(cfg_r, Path(args.out) if args.out else None, limit=args.limit, argv=sys.argv)
        return
    from experiments import train_mt

    cfg = load_config(train_mt.TrainMTConfig, "train_mt", config, overrides)
    train_mt.main(cfg, Path(args.out) if args.out else None, limit=args.limit, argv=sys.argv)


def _list(args: argparse.Namespace) -> None:
    for name, (what, _, _) in EXPERIMENTS.items():
        print(f"{name:<12} {what}   (config: {CONFIGS / (name + '.toml')})")


def _models(args: argparse.Namespace) -> None:
    from models import NAMED_MODELS, NamedModelSpec, cache_dir, named_model_status

    def size(n: int | None) -> str:
        return "-" if n is None else f"{n / 1e6:,.0f} MB"

    header = ("name", "installed", "converted", "size on disk", "architecture", "licence", "install")
    rows = [header]
    for name in NAMED_MODELS:
        st = named_model_status(name)
        shipped = not isinstance(st.spec, NamedModelSpec)
        on_disk = (f"{size(st.converted_bytes)} ({'shipped' if shipped else 'converted'})" if st.converted
                   else f"{size(st.package_bytes)} (package)")
        rows.append((name, "yes" if st.installed else "no", "yes" if st.converted else "no",
                     on_disk if st.installed or st.converted else "-", st.spec.architecture, st.spec.licence,
                     "" if st.installed else st.spec.install_command))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print(f"\nconverted models live in {cache_dir() / 'models'} ($LQ_CACHE); the first load of an installed model "
          "converts it")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="lq", description="Find the modes of text-generation models exactly and approximately, and measure "
        "how likelihood, degeneracy and quality diverge.")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error about bad input instead of its one-line message")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help=f"run an experiment (default: {DEFAULT_EXPERIMENT})",
                         description="Run an experiment; its config is a TOML file under experiments/configs, "
                         "overridable with --set. Re-running with the same --out resumes an interrupted run.")
    run.add_argument("experiment", nargs="?", help=f"one of: {', '.join(EXPERIMENTS)} (default {DEFAULT_EXPERIMENT})")
    run.add_argument("--config", help="a TOML config file instead of the experiment's default")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set max_seconds=120 --set 'beam_sizes=[1,5]'")
    run.add_argument("--limit", type=_positive, help="only the first N examples (N >= 1)")
    run.add_argument("--out", help="run directory (default runs/<experiment>-<time>); an existing one is resumed")
    run.add_argument("--threads", type=_positive, metavar="N",
                     help="torch threads of an in-process run (default: torch's, one per core; config key: threads); "
                     "two runs side by side on a small machine go faster with 1 each")
    run.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                     help="search on Ray actors (pip install -e '.[dist]'): 'local' starts Ray here, 'auto' joins the "
                     "cluster `ray start` made, or host:port; bare --ray lets Ray choose (config key: ray)")
    run.add_argument("--ray-workers", type=_positive, metavar="N",
                     help="Ray actors, each loading the model once (default: as many as the cluster's CPUs hold)")
    run.add_argument("--ray-threads", type=_positive, metavar="N", help="torch threads per Ray actor (default 1)")
    run.set_defaults(func=_run)
    train = sub.add_parser("train", help="train a model: `lq train mt` (the Bible de->en Marian model), "
                           "`lq train classifier` (the attribute classifiers of conditional beam search) or "
                           "`lq train recurrence` (memory for a frozen SmolLM2)",
                           description="Train a model. mt: re-running the same command resumes from its checkpoint; "
                           "config experiments/configs/train_mt.toml, overridable with --set (e.g. --set "
                           "contamination=0.01 --set contamination_kind=copy). classifier: for each model of "
                           "experiments/configs/conditional.toml (e.g. --set 'models=[\"bible-de-en-marian\"]'), "
                           "sample the model on training sources, label the samples by the attribute, train q(A | x, "
                           "y<=t) and report its held-out calibration; cached in $LQ_CACHE/classifiers. recurrence: "
                           "the recurrence module of a frozen decoder on long documents (config "
                           "experiments/configs/train_recurrence.toml), resumable like mt. nar: RUM-SUNDAE from "
                           "all-MiniLM-L6-v2 on KJV -> BBE (experiments/configs/train_nar.toml; --set init=random or "
                           "unroll=1 for the ablations), resumable.")
    train.add_argument("what", choices=["mt", "classifier", "recurrence", "nar"],
                       help="mt: a MarianMTModel on a parallel corpus; classifier: attribute classifiers; "
                       "recurrence: a recurrence module; nar: RUM-SUNDAE on KJV -> BBE")
    train.add_argument("--config", help="a TOML config file instead of the default")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    train.add_argument("--limit", type=_positive, help="mt: only the first N training pairs (N/10 dev and test); "
                       "classifier: only 4N training sources; recurrence: the first N training documents per domain")
    train.add_argument("--out", help="model folder (default $LQ_CACHE/models/<corpus>-marian or "
                       "<base>-recurrence); resumed if present")
    train.set_defaults(func=_train)
    figures = sub.add_parser("figures", help="re-render a run's figures (PDF and PNG) into RUN_DIR/figures")
    figures.add_argument("run_dir")
    figures.set_defaults(func=_figures)
    report = sub.add_parser("report", help="re-write a run's report.md (per-method table with CIs) and print it")
    report.add_argument("run_dir")
    report.set_defaults(func=_report)
    paper = sub.add_parser("paper", help="regenerate the paper's figures, tables and numbers from the committed runs "
                           "and build paper/paper.pdf (run from the repository root)",
                           description="Regenerate paper/generated (figures, per-method tables, numbers.tex) from "
                           "one run directory per experiment under paper/results, then build paper/paper.pdf with "
                           "latexmk if it is installed (else print how to install TeX).")
    paper.add_argument("--results", help="folder holding one run directory per experiment (default paper/results)")
    paper.add_argument("--no-pdf", action="store_true", help="only regenerate paper/generated; do not run latexmk")
    paper.set_defaults(func=_paper)
    sub.add_parser("list", help="list experiments").set_defaults(func=_list)
    sub.add_parser("models", help="list the named models available offline").set_defaults(func=_models)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except Exception as err:
        if isinstance(err, _user_errors()) and not args.debug:
            raise SystemExit(f"lq: error: {err} (--debug shows the traceback)") from err
        raise


def _positive(value: str) -> int:
    """``--limit``, ``--threads``, ...: a positive integer."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return n


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors shown as one line, not a traceback: bad input (``models.errors.InputError``: configs, models,
    corpora, run directories; a search's ``SearchInputError``), a model whose log-probabilities are not finite
    (``NonFiniteLogProbError``), and the file system's (``OSError``: disk full, no permission). The search errors are
    looked up lazily (a raised one's module is loaded) so that `lq --help` does not import torch."""
    search = sys.modules.get("decoding.types")
    found = (search.SearchInputError, search.NonFiniteLogProbError) if search else ()
    return (InputError, OSError, *found)


if __name__ == "__main__":
    main()
