"""Stream a generate model's tokens as they are made. The iterator resumes
by itself after a dropped connection (Last-Event-ID), so no token is lost or
printed twice.

    INFERQ_URL=http://127.0.0.1:8080 PYTHONPATH=clients/python python3 examples/python/stream_tokens.py
"""

import os

import inferq


def main() -> None:
    client = inferq.Client(os.environ.get("INFERQ_URL", "http://127.0.0.1:8080"))
    job = client.submit("repeat", text="hello ", parameters={"max_tokens": 18})
    for event in client.stream(job.id):
        if event.event == "token":
            print(event.text, end="", flush=True)
        elif event.event == "error":
            raise SystemExit(f"\njob failed: {event.error}")
    print()


if __name__ == "__main__":
    main()
