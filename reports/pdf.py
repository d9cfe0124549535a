"""HTML to PDF, in a child process with a memory and a time limit (RELIABILITY.md item 11,
T39). The child (reports/pdf_render.py) runs WeasyPrint with a URL fetcher that serves only
``data:`` URIs and bundled assets, so crawled text that makes the layout run away costs a
killed child, and crawled URLs are never fetched.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path


class PdfRenderError(RuntimeError):
    """The PDF renderer failed, ran out of memory or was stopped at its time limit."""


TIME_LIMIT_S = 300.0
MEMORY_LIMIT_BYTES = 3 * 1024**3  # address space; the CJK fonts are mapped, not read


def _limit_child() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def html_to_pdf(html: str, target: Path, *, time_limit: float = TIME_LIMIT_S) -> list[str]:
    """Write the PDF in a child process with a memory limit and a wall-clock limit
    (RELIABILITY.md item 11, T39): hostile HTML that makes the layout run away costs a
    killed child, not the evaluator's process. Returns the URLs that were refused."""
    target = Path(target)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "reports.pdf_render", str(target)],
            input=html.encode("utf-8"),
            capture_output=True,
            timeout=time_limit,
            preexec_fn=_limit_child,
            cwd=Path(__file__).resolve().parent.parent,
        )
    except subprocess.TimeoutExpired as exc:
        target.unlink(missing_ok=True)
        raise PdfRenderError(f"PDF rendering stopped after {time_limit:.0f} s") from exc
    if proc.returncode != 0:
        target.unlink(missing_ok=True)
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise PdfRenderError(f"PDF rendering failed ({proc.returncode}): {' | '.join(tail)}")
    return json.loads(proc.stdout.decode("utf-8") or "[]")
