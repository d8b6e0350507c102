"""reward_model and llm_judge: a nano Qwen3 reward model and judge built here (byte-level tokenizer, random
weights), and a fake OpenAI-compatible judge server on 127.0.0.1 that returns canned replies.

Run: .venv/bin/python -m pytest -q tests/rewards/test_model_based.py
"""

from __future__ import annotations

import http.server
import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rewards.model_based import _load, llm_judge, parse_judge_score, prompt_messages, reward_model

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # One token per byte: any text encodes, nothing to train.
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        vocab[special] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        chat_template=CHATML,
    )


def _config(tokenizer, **extra):
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=4096, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **extra,
    )


@pytest.fixture(scope="module")
def nano_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A nano reward model and a nano causal judge, saved as model directories."""
    import torch
    from transformers import Qwen3ForCausalLM, Qwen3ForSequenceClassification

    torch.set_num_threads(1)
    tokenizer = _build_tokenizer()
    folders = {}
    for kind, model_class, extra in (
        ("reward", Qwen3ForSequenceClassification, {"num_labels": 1}),
        ("judge", Qwen3ForCausalLM, {}),
    ):
        torch.manual_seed(0)
        folder = tmp_path_factory.mktemp(f"nano_{kind}")
        model_class(_config(tokenizer, **extra)).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[kind] = folder
    return folders


# ------------------------------------------------------------ reward_model

PROMPTS = [[{"role": "user", "content": "What is the capital of France?"}]] * 3
ANSWERS = ["Paris.", "<think>\nhm\n</think>\n\nIt is Paris, of course.", "Berlin!"]


def test_reward_model_scores_are_deterministic_floats(nano_models: dict[str, Path]) -> None:
    path = str(nano_models["reward"])
    first = reward_model(ANSWERS, prompts=PROMPTS, task=["chat"] * 3, model_path=path, batch_size=2)
    again = reward_model(ANSWERS, prompts=PROMPTS, task=["chat"] * 3, model_path=path, batch_size=1)
    assert all(isinstance(score, float) for score in first)
    assert len(set(first)) == 3  # different answers, different scores
    assert again == pytest.approx(first, abs=1e-5)  # batching and padding do not change a score


def test_reward_model_is_loaded_once_and_prompts_in_any_form_agree(nano_models: dict[str, Path]) -> None:
    path = str(nano_models["reward"])
    reward_model(["Paris."], prompts=PROMPTS[:1], task=["chat"], model_path=path)
    loads = _load.cache_info().misses
    as_messages = reward_model(["Paris."], prompts=PROMPTS[:1], task=["chat"], model_path=path)
    as_chatml = reward_model(
        ["Paris."], prompts=["<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"], task=["chat"],
        model_path=path,
    )
    assert _load.cache_info().misses == loads
    assert as_chatml == pytest.approx(as_messages, abs=1e-6)


def test_reward_model_squash_routing_and_cut_off_answers(nano_models: dict[str, Path]) -> None:
    path = str(nano_models["reward"])
    logits = reward_model(ANSWERS, prompts=PROMPTS, task=["chat"] * 3, model_path=path)
    squashed = reward_model(ANSWERS, prompts=PROMPTS, task=["chat"] * 3, model_path=path, squash="sigmoid")
    assert squashed == pytest.approx([1 / (1 + math.exp(-x)) for x in logits], abs=1e-6)
    completions = ["Paris.", "Paris.", "Berlin!", "<think>\ncut off"]
    scores = reward_model(
        completions, prompts=PROMPTS[:1] * 2 + [None] + PROMPTS[:1], task=["chat", None, "chat", "chat"],
        model_path=path,
    )
    assert scores[1:3] == [None, None]  # no task; no prompt
    assert scores[3] == scores[0]  # no answer: the lowest score of the call
    assert reward_model(["Paris."], prompts=PROMPTS[:1], task=["math"], model_path=path, tasks=["chat"]) == [None]


def test_reward_model_configuration_errors(tmp_path: Path) -> None:
    assert reward_model(["Paris."], prompts=PROMPTS[:1]) == [None]  # no task column: nothing to judge, no error
    with pytest.raises(ValueError, match="reward_model: model_path is not set"):
        reward_model(["Paris."], prompts=PROMPTS[:1], task=["chat"])
    with pytest.raises(ValueError, match="is not a directory"):
        reward_model(["Paris."], prompts=PROMPTS[:1], task=["chat"], model_path=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="squash must be one of"):
        reward_model(["Paris."], squash="softmax")


def test_prompt_messages_forms() -> None:
    assert prompt_messages("Hi") == [{"role": "user", "content": "Hi"}]
    assert prompt_messages(None) is None
    assert prompt_messages([{"role": "user", "content": "Hi"}, "junk"]) == [{"role": "user", "content": "Hi"}]


# ------------------------------------------------------------ llm_judge: parsing and a local model

PARSE_CASES = [
    ("Score: 7", 0.7, "the asked-for line"),
    ("The answer is close.\n**Score:** 8/10", 0.8, "markdown and /10"),
    ("Reasoning... score of 3. Final Score: 6", 0.6, "the last score line wins"),
    ("I would rate it 9/10.", 0.9, "N/10 without 'score'"),
    ("10", 1.0, "a bare number"),
    ("<think>\nScore: 2? no...\n</think>\n\nScore: 5", 0.5, "thinking ignored"),
    ("Score: 11", None, "out of range"),
    ("A fine answer.", None, "no grade"),
    (None, None, "no reply"),
]


@pytest.mark.parametrize(("reply", "score", "why"), PARSE_CASES, ids=[c[2] for c in PARSE_CASES])
def test_parse_judge_score(reply, score, why: str) -> None:
    assert parse_judge_score(reply) == score, why


def test_local_judge_generates_in_batches_deterministically(nano_models: dict[str, Path]) -> None:
    path = str(nano_models["judge"])
    completions = ["Paris.", "Berlin.", "Lyon.", "<think>\ncut"]
    kwargs = dict(prompts=PROMPTS + PROMPTS[:1], reference=["Paris"] * 4, model_path=path, batch_size=2,
                  max_new_tokens=4)
    first, again = llm_judge(completions, **kwargs), llm_judge(completions, **kwargs)
    assert first == again and len(first) == 4 and first[3] == 0.0
    assert all(score is None or 0.0 <= score <= 1.0 for score in first)  # random weights rarely write a grade


# ------------------------------------------------------------ llm_judge: a fake OpenAI-compatible server


class _JudgeHandler(http.server.BaseHTTPRequestHandler):
    """Grades by the answer's first word: Paris 9, Lyon 4, 'garbage' gets a broken body, 'nograde' prose,
    'toolong' HTTP 400, 'down' HTTP 503. Records every request and the peak number in flight."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        server = self.server
        with server.lock:
            server.in_flight += 1
            server.peak = max(server.peak, server.in_flight)
        counted = True

        def done() -> None:
            # Leave the count *before* replying: once the client has its reply it may send the next request,
            # which could otherwise arrive while this handler still counts itself and read as one too many.
            nonlocal counted
            if counted:
                with server.lock:
                    server.in_flight -= 1
                counted = False

        try:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = body["messages"][0]["content"]
            answer = prompt.split("<answer>\n", 1)[1].split()[0].strip(".")
            with server.lock:
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
            time.sleep(0.05)  # long enough for concurrent requests to overlap
            done()
            if answer == "down":
                self.send_error(503)
                return
            if answer == "toolong":
                self.send_error(400)
                return
            if answer == "garbage":
                payload = b"<html>not json"
            else:
                content = {"Paris": "Correct and complete.\nScore: 9", "Lyon": "Wrong city.\nScore: 4"}.get(
                    answer, "I have no opinion."
                )
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        finally:
            done()

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture()
def judge_server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _JudgeHandler)
    server.lock, server.requests, server.in_flight, server.peak = threading.Lock(), [], 0, 0
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _url(server: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_endpoint_judge_parses_grades_and_runs_requests_concurrently(judge_server, monkeypatch) -> None:
    monkeypatch.setenv("NANO_JUDGE_KEY", "secret-123")
    completions = ["Paris.", "Lyon.", "garbage", "nograde", "toolong", "Paris.", "Lyon.", "Paris.", "<think>\ncut"]
    scores = llm_judge(
        completions, prompts=PROMPTS[:1] * 9, reference=["Paris"] * 8 + ["Paris"], base_url=_url(judge_server) + "/v1",
        model="judge-1", api_key_env="NANO_JUDGE_KEY", concurrency=4, retries=0,
    )
    assert scores == [0.9, 0.4, None, None, None, 0.9, 0.4, 0.9, 0.0]
    requests = judge_server.requests
    assert len(requests) == 8  # the cut-off answer is never sent
    assert {r["path"] for r in requests} == {"/v1/chat/completions"}
    assert {r["auth"] for r in requests} == {"Bearer secret-123"}
    assert {r["body"]["model"] for r in requests} == {"judge-1"} and requests[0]["body"]["temperature"] == 0.0
    assert "What is the capital of France?" in requests[0]["body"]["messages"][0]["content"]
    assert 1 < judge_server.peak <= 4


def test_endpoint_judge_skips_rows_without_reference(judge_server) -> None:
    url = _url(judge_server)
    scores = llm_judge(["Paris.", "Paris."], prompts=PROMPTS[:2], reference=[None, "Paris"], base_url=url, model="m")
    assert scores == [None, 0.9] and len(judge_server.requests) == 1


def test_a_judge_that_is_down_for_every_request_raises(judge_server) -> None:
    with pytest.raises(ConnectionError, match="unreachable for all 2 requests: HTTP 503"):
        llm_judge(["down", "down"], prompts=PROMPTS[:2], reference=["x"] * 2, base_url=_url(judge_server),
                  model="judge-1", retries=0)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(ConnectionError, match="unreachable"):
        llm_judge(["Paris."], prompts=PROMPTS[:1], reference=["x"], base_url=f"http://127.0.0.1:{closed}",
                  model="judge-1", retries=0, timeout=5)


def test_judge_configuration_errors(monkeypatch) -> None:
    assert llm_judge(["Paris."], prompts=PROMPTS[:1]) == [None]  # no reference column: nothing to judge, no error
    with pytest.raises(ValueError, match="llm_judge: no judge configured"):
        llm_judge(["Paris."], prompts=PROMPTS[:1], reference=["Paris"])
    with pytest.raises(ValueError, match="no judge configured"):
        llm_judge(["Paris."], reference=["Paris"], base_url="http://127.0.0.1:9")  # a server needs a model name
    with pytest.raises(ValueError, match="not both"):
        llm_judge(["Paris."], reference=["Paris"], base_url="http://127.0.0.1:9", model="m", model_path="/tmp")
    monkeypatch.delenv("NO_SUCH_JUDGE_KEY", raising=False)
    with pytest.raises(ValueError, match="'NO_SUCH_JUDGE_KEY', but that environment variable is unset"):
        llm_judge(["Paris."], reference=["Paris"], base_url="http://127.0.0.1:9", model="m",
                  api_key_env="NO_SUCH_JUDGE_KEY")
    with pytest.raises(ValueError, match="concurrency must be >= 1"):
        llm_judge(["Paris."], concurrency=0)
