"""The extraction child process: reads (html, options) frames on stdin, writes results on stdout.

Started by `tokenmill.stages.extract._Child`; runs until its stdin closes.
"""

from __future__ import annotations

import sys

from tokenmill.stages.extract import _extract, recv_frame, send_frame


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the frames
    try:
        import trafilatura  # noqa: F401  (import once, before the first document)
    except Exception as e:  # a broken install: say why, instead of just exiting
        send_frame(stdout, ("failed", f"importing trafilatura: {type(e).__name__}: {e}"))
        return
    send_frame(stdout, ("ready", None))
    while True:
        try:
            html, opts = recv_frame(stdin)
        except EOFError:
            return
        try:
            result = ("ok", _extract(html, opts))
        except Exception as e:  # a bad document must not end the child
            result = ("error", f"{type(e).__name__}: {e}")
        send_frame(stdout, result)


if __name__ == "__main__":
    main()
