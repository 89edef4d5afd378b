"""Starting the background jobs of the pages (region SHAP, segmentation) on the shared runner.

One job per key, shared by every session: the same case and weights join the running job. What a
job does, and what it stores when it finishes, is ``pipelines.job_bodies``; pages poll the job
(``ui.widgets.job_progress``) and read the stored result.
"""

from __future__ import annotations

from core.errors import ConfigError
from core.jobs import Job
from inference.models.loader import LoadedModel
from pipelines import job_bodies
from ui.resources import anatomy_model, database, image_store, jobs


def region_shap_key(input_sha256: str, weights_sha256: str, run_id: int) -> str:
    return f"region-shap:{input_sha256}:{weights_sha256}:{run_id}"


def start_region_shap(analysis, loaded: LoadedModel, run_id: int) -> Job:
    """Start (or join) the region SHAP job for a case; it stores its result with the run. With
    workers it runs on one of them, which reads the radiograph from the shared image store.

    Raises:
        ConfigError: workers are configured but the radiograph is not in the image store.
    """
    sha = analysis.facts.input_sha256
    key = region_shap_key(sha, loaded.weights_sha256, run_id)
    runner = jobs()
    if runner.remote is not None and runner.runs_remotely(key):
        store = image_store()
        if store is None or not store.has(sha):
            raise ConfigError(
                "Region SHAP runs on the workers, which read the radiograph from the image store: it is not kept "
                "there (IMAGE_STORE=0, or it could not be written). Turn the image store on and upload it again."
            )
        return runner.remote.submit_region_shap(
            key, run_id, sha, loaded.spec.model_id, loaded.weights_sha256, loaded.trained
        )
    sessions = database()  # bound now: the job runs outside the script thread
    job_bodies.import_region_shap_libraries()  # in this thread: see there
    image = analysis.model_input[0, 0]
    segmentation = anatomy_model()

    def work(progress):
        return job_bodies.explain_regions_and_store(sessions, run_id, loaded, image, segmentation, progress)

    return runner.local.submit(key, work)


segmentation_key = job_bodies.segmentation_key


def start_segmentation(inputs, loaded, facts, actor: str | None):
    """Segment a case in the background (progress per window), measure it and store the run.
    The job's result is (Segmentation, stored run id); the same case and weights join the same job."""
    sessions = database()  # bound now: the job runs outside the script thread
    store = image_store()
    key = segmentation_key(inputs.input_sha256, loaded.spec.model_id, loaded.weights_sha256)
    runner = jobs().remote
    if runner is None:

        def work(progress):
            return job_bodies.segment_and_store(sessions, inputs, loaded, facts, actor, progress, store)

        return jobs().local.submit(key, work)
    # On the workers: the volume reaches them through the shared image store, by its sha256.
    return runner.submit_segmentation(
        key, store, inputs, loaded.spec.model_id, loaded.weights_sha256, loaded.trained, facts, actor
    )
