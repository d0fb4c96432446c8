"""seqlab's Optuna sweeper: ask the study for `n_jobs` trials, launch them through the configured launcher, tell it the outcomes.

It reads hydra-optuna-sweeper's config (sampler, direction, storage, study_name, n_trials, n_jobs,
max_failure_rate, params) on current Optuna, adds `pruner`, and continues a stored study when
run again. `direction` may be left out (null): the run's own config says which way its
`optimized_metric` is better (seqlab.sweeps.objective), and a direction that contradicts it is
refused before any trial runs. `params` may nest (`model: {dropout: ...}`), so that
`~hydra.sweeper.params.model.dropout` drops one dimension of a preset. Optuna is imported only
when a sweep starts: Hydra imports every plugin module on every run.
"""

import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from seqlab.errors import SeqlabError, reports_sweep_errors
from seqlab.sweeps.job_record import job_outcome

log = logging.getLogger(__name__)


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        sampler: Any,
        direction: Any = None,
        storage: str | None = None,
        study_name: str | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        max_failure_rate: float = 0.0,
        params: DictConfig | None = None,
        pruner: Any = None,
    ) -> None:
        self.sampler = sampler
        self.direction = direction
        self.storage = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.max_failure_rate = max_failure_rate
        self.params = params
        self.pruner = pruner
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context, task_function=task_function, config=config)

    @reports_sweep_errors
    def sweep(self, arguments: list[str]) -> None:
        # Optuna and its plots (the optional `sweeps` extra; 0.3 s) when a sweep starts: Hydra imports this module for every command.
        import optuna

        from seqlab.sweeps import optuna_study
        from seqlab.sweeps.objective import study_directions
        from seqlab.sweeps.search_space import param_overrides, parse_search_space

        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise SeqlabError(f"hydra.sweeper.max_failure_rate must be between 0 and 1, got {self.max_failure_rate}")
        if self.n_jobs < 1 or self.n_trials < 0:
            raise SeqlabError(f"hydra.sweeper.n_jobs must be at least 1 and n_trials at least 0, got {self.n_jobs} and {self.n_trials}")
        # The composed config of the jobs (less the swept values) says what they return and which way is better.
        directions = study_directions(self.direction, self.config.get("optimized_metric"), self.config.get("monitor"), self.config.get("monitor_mode"))
        space = parse_search_space([*param_overrides(self.params or {}), *arguments])
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        n_trials = self.n_trials
        # Hydra hands the sampler and pruner instantiated; the grid sampler comes as a partial
        # (`_partial_: true`) because its grid is the search space, known only here.
        sampler, pruner = self.sampler, self.pruner or optuna.pruners.NopPruner()
        if callable(sampler) and not isinstance(sampler, optuna.samplers.BaseSampler):
            grid = space.grid()
            sampler = sampler(search_space=grid)
            n_trials = min(n_trials, math.prod(len(values) for values in grid.values()))
        storage = optuna_study.resolve_storage(self.storage, sweep_dir)
        study_name = self.study_name or self.config.hydra.job.name
        study = optuna.create_study(
            storage=optuna_study.open_storage(storage),
            sampler=sampler,
            pruner=pruner,
            study_name=study_name,
            directions=directions,
            load_if_exists=True,
        )
        if study.trials:
            # A seeded sampler would propose again the points it proposed when the study began.
            sampler.reseed_rng()
        log.info(
            "Optuna study %r in %s: %d trials so far; %d more, %d at a time; sampler %s, pruner %s, directions %s",
            study_name,
            storage,
            len(study.trials),
            n_trials,
            self.n_jobs,
            type(sampler).__name__,
            type(pruner).__name__,
            directions,
        )

        job_idx, finished, failures, grid_done = 0, 0, [], False
        try:
            while job_idx < n_trials and not grid_done:
                trials = [study.ask(fixed_distributions=space.distributions) for _ in range(min(self.n_jobs, n_trials - job_idx))]
                overrides = [space.trial_overrides(trial.params) for trial in trials]
                for trial, trial_overrides in zip(trials, overrides):
                    trial.set_user_attr("overrides", trial_overrides)  # for optimization_results.yaml's best_overrides
                batch = [[*trial_overrides, *optuna_study.trial_env_overrides(storage, study_name, trial)] for trial, trial_overrides in zip(trials, overrides)]
                returns = self.launcher.launch(batch, initial_job_idx=job_idx)
                job_idx += len(returns)
                for trial, ret in zip(trials, returns):
                    finished += 1
                    if ret.hydra_cfg is not None:
                        trial.set_user_attr("job_dir", str(ret.hydra_cfg.hydra.runtime.output_dir))
                    outcome = job_outcome(ret)
                    if outcome["status"] == "completed":
                        try:
                            values = optuna_study.trial_values(outcome["return_value"], len(directions))
                        except SeqlabError as error:
                            outcome = {"status": "failed", "error": str(error)}
                    if outcome["status"] == "completed":
                        grid_done |= _tell(study, trial, values=values)
                    elif outcome["status"] == "pruned":
                        log.info("trial %d pruned: %s", trial.number, outcome["error"])
                        grid_done |= _tell(study, trial, state=optuna.trial.TrialState.PRUNED)
                    else:
                        log.warning("trial %d failed: %s", trial.number, outcome["error"])
                        trial.set_user_attr("error", outcome["error"])
                        grid_done |= _tell(study, trial, state=optuna.trial.TrialState.FAIL)
                        failures.append(outcome["error"])
                # The failure budget is a share of the sweep's trials, so it does not depend on the order they fail in.
                if len(failures) > self.max_failure_rate * n_trials:
                    raise SeqlabError(
                        f"{len(failures)} of {finished} trials failed, more than hydra.sweeper.max_failure_rate={self.max_failure_rate} "
                        f"of n_trials={n_trials} allows; last error: {failures[-1]}"
                    )
        finally:
            optuna_study.write_reports(study, sweep_dir, storage)
        log.info("results: %s", sweep_dir / optuna_study.RESULTS_YAML)


def _tell(study: Any, trial: Any, **outcome: Any) -> bool:
    """Tell the study a trial's outcome; True when the grid sampler has run every point of its grid.

    The grid sampler then stops the study, which Optuna allows only inside `Study.optimize`; the
    trial's outcome is stored before that error.
    """
    try:
        study.tell(trial, **outcome)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise
        return True
    return False
