"""What Bedrock's extras cost (issue 23): AWS's binary event stream decoded against the same
events in SSE, a SigV4 signature per request, and a whole call through the library against
boto3's own ``bedrock-runtime`` client on the same fake Bedrock.

    .venv/bin/python -m bench.cloud

* **decode**: 4,000 ``contentBlockDelta`` events (a 20-character text each), framed as AWS
  event-stream messages (:mod:`msgflux._transport.eventstream`) and as SSE, fed in 16 KiB
  reads to :class:`~msgflux._transport.eventstream.EventStreamDecoder` and
  :class:`~msgflux._transport.sse.SSEDecoder`: microseconds per event, best of 7 rounds, the two
  decoders alternating within a round (CRC32 of prelude and message included).
* **sign**: :meth:`msgflux.models.providers.aws.AWSAuth.sign` (botocore's SigV4 signer) on a
  1 KiB Converse body: microseconds per request, best of 7 rounds of 2,000.
* **call**: sequential whole Converse calls against the fake Bedrock of
  ``tests/upstream_cloud.py`` (it verifies each signature with botocore), in one process: the
  library's sync ``model(messages=...)`` and boto3's ``client.converse(...)``, interleaved,
  200 each per round, median of the per-round means over 5 rounds; the ratio is the figure
  (the fake's own time is in both).
"""

from __future__ import annotations

import statistics
import time

import orjson

from msgflux._transport import Endpoint
from msgflux._transport.eventstream import EventStreamDecoder, encode_message
from msgflux._transport.sse import SSEDecoder

EVENTS = 4000
READ = 16 * 1024
KEY_ID = "AKIDBENCHMARK001"
SECRET = "bench-secret-access-key-value"


def _chunks(data: bytes) -> list[bytes]:
    return [data[i : i + READ] for i in range(0, len(data), READ)]


def decode() -> tuple[float, float]:
    payloads = [
        orjson.dumps(
            {"contentBlockIndex": 0, "delta": {"text": f"word{i:06d} and more "}, "p": "abcd"}
        )
        for i in range(EVENTS)
    ]
    headers = {":event-type": "contentBlockDelta", ":content-type": "application/json"}
    framed = _chunks(
        b"".join(encode_message({**headers, ":message-type": "event"}, p) for p in payloads)
    )
    sse = _chunks(b"".join(b"event: contentBlockDelta\ndata: " + p + b"\n\n" for p in payloads))
    best = {"eventstream": float("inf"), "sse": float("inf")}
    for _ in range(7):
        for name, reads in (("eventstream", framed), ("sse", sse)):
            decoder = EventStreamDecoder() if name == "eventstream" else SSEDecoder()
            started = time.perf_counter()
            count = 0
            for chunk in reads:
                count += len(decoder.feed(chunk))
            decoder.end()
            elapsed = time.perf_counter() - started
            assert count == EVENTS, (name, count)
            best[name] = min(best[name], elapsed / EVENTS * 1e6)
    return best["eventstream"], best["sse"]


def sign() -> float:
    from msgflux.models.providers.aws import AWSAuth

    auth = AWSAuth(access_key_id=KEY_ID, secret_access_key=SECRET, region="us-east-1")
    auth.prepare()
    ep = Endpoint(
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse",
        {"Content-Type": "application/json"},
        sign=auth.sign,
    )
    body = orjson.dumps({"messages": [{"role": "user", "content": [{"text": "x" * 1000}]}]})
    best = float("inf")
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(2000):
            ep.headers_for(body)
        best = min(best, (time.perf_counter() - started) / 2000 * 1e6)
    return best


def calls() -> tuple[float, float]:
    import boto3
    from tests.upstream import Upstream

    import msgflux as mf

    up = Upstream().start()
    try:
        up.cloud.add_aws_key(KEY_ID, SECRET)
        model = mf.Model.chat_completion(
            "bedrock/anthropic.claude-3-5-haiku-20241022-v1:0",
            aws_region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
            base_url=up.url,
            max_retries=0,
        )
        client = boto3.client(
            "bedrock-runtime",
            region_name="us-east-1",
            endpoint_url=up.url,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )
        messages = [{"role": "user", "content": [{"text": "hi"}]}]
        model(messages="hi")
        client.converse(modelId="anthropic.claude-3-5-haiku-20241022-v1:0", messages=messages)
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(5):
            up.reset()
            a = b = 0.0
            for _ in range(200):
                t = time.perf_counter()
                model(messages="hi")
                a += time.perf_counter() - t
                t = time.perf_counter()
                client.converse(
                    modelId="anthropic.claude-3-5-haiku-20241022-v1:0", messages=messages
                )
                b += time.perf_counter() - t
            assert all(r.invalid is None for r in up.requests)
            ours.append(a / 200 * 1e3)
            theirs.append(b / 200 * 1e3)
        client.close()
        return statistics.median(ours), statistics.median(theirs)
    finally:
        up.stop()


def main() -> None:
    framed, sse = decode()
    print(
        f"decode: event stream {framed:.2f} us/event, SSE {sse:.2f} us/event, "
        f"ratio {framed / sse:.2f}x"
    )
    print(f"sign: SigV4 (botocore) {sign():.1f} us/request")
    ours, theirs = calls()
    print(
        f"call: msgflux {ours:.3f} ms, boto3 {theirs:.3f} ms per sequential Converse call, "
        f"ratio {ours / theirs:.2f}x"
    )


if __name__ == "__main__":
    main()
