"""A stage's real entry point under a launcher, with probes: each process records what it trained on, the weights it
ended with and which of the stage's file-writing and evaluating steps it ran. Used by test_distributed.py:

    accelerate launch --config_file configs/accelerate/cpu-ddp.yaml -m tests.stages.ddp_probe PROBE_DIR sft \
        --config configs/stage1_sft/nano.yaml key=value ...

writes PROBE_DIR/rank<N>.json per process (after the stage's main() has returned in that process).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import Counter
from pathlib import Path

from stages import common, evaluate, reasoning_rl, sft, thinking_fusion
from stages.config import run_cli

STAGES = {"sft": (sft, sft.SFTStageConfig), "reasoning_rl": (reasoning_rl, reasoning_rl.ReasoningRLConfig),
          "thinking_fusion": (thinking_fusion, thinking_fusion.FusionStageConfig)}
# what only the main process may do: write the stage's files, evaluate, generate (rejection sampling)
COUNTED = ("evaluate", "finish_stage", "write_json_atomic", "rejection_rows", "think_follow", "budget_curve",
           "plot_budget_curve")


def weights_digest(model) -> str:
    """sha256 over every parameter and buffer, by name: equal digests = bit-identical weights."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def batch_digest(inputs: dict) -> str:
    import torch

    h = hashlib.sha256()
    for key in sorted(inputs):
        if isinstance(inputs[key], torch.Tensor):
            h.update(key.encode())
            h.update(inputs[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(probe_dir: Path, stage: str, argv: list[str]) -> None:
    module, cfg_cls = STAGES[stage]
    record: dict = {"calls": Counter(), "batches": []}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            record["calls"][name] += 1
            return fn(*args, **kwargs)
        return wrapper

    # the stage's own names, and stages.evaluate's for the calls made inside it (evaluate_input -> evaluate)
    for where in (module, evaluate):
        for name in COUNTED:
            if hasattr(where, name):
                setattr(where, name, counted(name, getattr(where, name)))
    common.save_model_dir = counted("save_model_dir", common.save_model_dir)

    train_resumable = common.train_resumable

    def probed_train(trainer, out_dir, tag):
        compute_loss = trainer.compute_loss

        def recording_compute_loss(model, inputs, *args, **kwargs):
            record["batches"].append(batch_digest(inputs))
            return compute_loss(model, inputs, *args, **kwargs)

        trainer.compute_loss = recording_compute_loss
        record["weights_before"] = weights_digest(trainer.model)
        result = train_resumable(trainer, out_dir, tag)
        record["weights_after"] = weights_digest(trainer.model)
        record["world_size"] = trainer.args.world_size
        record["global_step"] = trainer.state.global_step
        return result

    sft.train_resumable = reasoning_rl.train_resumable = probed_train  # stage 3 trains with sft.train_sft
    run_cli(module.main, cfg_cls, module.__doc__, argv)
    rank = int(os.environ.get("RANK", "0"))
    record["rank"] = rank
    record["returned"] = True
    probe_dir.mkdir(parents=True, exist_ok=True)
    (probe_dir / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3:])
