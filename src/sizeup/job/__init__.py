"""The job description every command, the validator, scenario files, audit claims and the web page share.

    from sizeup.job import build_job
    job = build_job({"model": "llama-3-8b", "gpu": "h100-sxm", "gpus": 8, "tokens": "10B"})
    job.setup          # the core's TrainSetup
    job.command()      # 'sizeup train llama-3-8b --gpu h100-sxm --gpus 8 ...'
"""

from sizeup.job.flags import JOB_FLAG_NAMES, JOB_FLAGS, JobFlag
from sizeup.job.parse import build_job, collect_values
from sizeup.job.tree import Job

__all__ = ["JOB_FLAGS", "JOB_FLAG_NAMES", "Job", "JobFlag", "build_job", "collect_values"]
