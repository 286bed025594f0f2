"""A stand-in backfill job: 'builds' one table for a date (or a range) and records it in out/."""

import pathlib
import sys
import time

table, start, *rest = sys.argv[1:]
end = rest[0] if rest else start
out = pathlib.Path("out") / table
out.mkdir(parents=True, exist_ok=True)
print(f"Processing game date {start}..{end} for {table}", flush=True)
time.sleep(0.02)
(out / f"{start}_{end}.done").write_text("ok\n")
print(f"MERGE completed: {table} {start}..{end}", flush=True)
