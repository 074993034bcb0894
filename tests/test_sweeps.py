"""Sweeps (README, "Sweeps"): the exit code and summary of a sweep, its launchers (joblib,
submitit's local executor, the SLURM presets), Optuna, gan-report and thread pinning."""

import os
import signal


def test_a_stop_on_a_logging_step_keeps_its_row_and_resumes_exactly(run_tiny, tmp_path,
                                                                      monkeypatch):
    # the signal lands during step 40, which writes a metrics.csv row: the run must write it
    # before it stops, or the resumed run never does (and averages 40 steps into row 60)
    from gan_cli.console import RunConsole

    whole, _ = run_tiny(run_dir=tmp_path / "whole")
    step = RunConsole.step

    def signal_at_40(self, n):
        if n == 40:
            os.kill(os.getpid(), signal.SIGTERM)
        step(self, n)

    monkeypatch.setattr(RunConsole, "step", signal_at_40)
    stopped, run_dir = run_tiny(run_dir=tmp_path / "stopped")
    assert (stopped["status"], stopped["step"]) == ("interrupted", 40)
    monkeypatch.setattr(RunConsole, "step", step)
    resumed, _ = run_tiny(run_dir=run_dir)  # a requeued job: same folder, same config
    assert (resumed["status"], resumed["step"]) == ("completed", 60)
    assert (run_dir / "metrics.csv").read_text() == (tmp_path / "whole/metrics.csv").read_text()
    assert resumed["metrics"] == whole["metrics"]
