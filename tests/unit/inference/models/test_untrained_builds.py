"""The untrained mode's networks are the same on every machine and in every process, even when a
server builds two at once (its warm-up loading the chest X-ray model while a page asks for a
segmentation network): a worker holds a page's job to the weights the page named."""

from __future__ import annotations

import threading

from core.settings import load_settings
from inference.models.adapters import adapter_for
from inference.models.loader import state_dict_sha256, weights_identity
from inference.models.registry import CXR_DENSENET, WHOLEBODY_CT_SEGRESNET


def test_two_untrained_networks_built_at_once_get_the_weights_each_gets_alone() -> None:
    specs = (CXR_DENSENET, WHOLEBODY_CT_SEGRESNET)
    alone = {spec.model_id: state_dict_sha256(adapter_for(spec).untrained(spec)) for spec in specs}
    built: list[tuple[str, str]] = []
    start = threading.Barrier(len(specs))

    def build(spec) -> None:
        start.wait()
        for _ in range(2):
            built.append((spec.model_id, state_dict_sha256(adapter_for(spec).untrained(spec))))

    threads = [threading.Thread(target=build, args=(spec,)) for spec in specs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 4 and all(sha == alone[model_id] for model_id, sha in built), (alone, built)
    # What a page names to the workers is what a worker loads.
    assert weights_identity(WHOLEBODY_CT_SEGRESNET, load_settings(), allow_untrained=True) == (
        alone[WHOLEBODY_CT_SEGRESNET.model_id],
        False,
    )
