"""Copy a data folder's MLflow data to another tracking server: ``push --to URL``.

MLflow has no server-to-server copy, and the export-import tools lose data on the way
(runs with model inputs, artifacts between local servers, creation dates) and double
runs when run twice (README, "Move a laptop folder to the team server"). This copy is
written on :class:`mlflow.MlflowClient` and makes the target *equal* to the source
rather than replaying a log:

1. :func:`plan` reads both sides and lists what the target lacks: experiments, runs
   and, per run, the params, tags, metric points, dataset and model links and artifact
   files missing there. Each copied object carries its source id in the tag
   :data:`~mlflow_magic.contract.PUSH_SOURCE_TAG`, so the target object of every
   source object is found again by a later push.
2. :func:`apply` copies exactly that list, in an order that keeps links valid
   (experiments, runs, logged models, then metric points, links, artifacts, the
   runs' end, registered models, traces).
3. :func:`verify` plans again, which must find nothing, and compares what a plan
   cannot: extra metric points, params of another value and every artifact's sha256.

So a second push plans nothing and says so, and a push stopped anywhere (kill -9,
network gone, Ctrl-C) resumes where it stopped: the next plan lists only what is still
missing, never a second copy. Nothing on the source is written.

Run times, statuses, metric timestamps and steps are kept. MLflow's API gives no way to
set a logged model's or a model version's creation time, or a registered model's
deprecated stage: those are the target's.
"""

from .checking import Verified, verify
from .copying import Progress, Tally, apply, quiet
from .planning import ExperimentPlan, ModelPlan, Plan, RegisteredPlan, RunPlan, plan
from .pushing import push

__all__ = ["ExperimentPlan", "ModelPlan", "Plan", "Progress", "RegisteredPlan", "RunPlan",
           "Tally", "Verified", "apply", "plan", "push", "quiet", "verify"]
