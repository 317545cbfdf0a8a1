"""A bioinformatics-shaped pipeline: split a file into chunks (blobs), count each chunk's records in a map
over the chunks, and merge the counts; the counting step is cached.

    aloft run examples/python/chunks.py:chunks --input records=1000 --input chunk_size=300
"""

import os
import tempfile

from aloft import Blob, map_task, task, workflow


class Fastq(Blob):
    """A blob of format fastq (`Fastq` means the same; a subclass keeps type checkers happy)."""

    format = "fastq"


@task
def make_reads(records: int) -> Fastq:
    """A FASTQ-like file of `records` four-line records."""
    path = os.path.join(tempfile.mkdtemp(), "reads.fastq")
    with open(path, "w") as file:
        for index in range(records):
            file.write(f"@read{index}\nACGT\n+\nFFFF\n")
    return Fastq(path)


@task
def split(reads: Fastq, chunk_size: int) -> list[Fastq]:
    """Chunks of at most `chunk_size` records; each chunk is a blob of its own."""
    lines = reads.read_text().splitlines(keepends=True)
    directory = tempfile.mkdtemp()
    chunks = []
    step = chunk_size * 4
    for index, start in enumerate(range(0, len(lines), step)):
        path = os.path.join(directory, f"chunk-{index}.fastq")
        with open(path, "w") as file:
            file.writelines(lines[start : start + step])
        chunks.append(Fastq(path))
    return chunks


@task(cache="1")
def count(chunk: Fastq) -> int:
    return sum(1 for line in chunk.read_text().splitlines() if line.startswith("@"))


@task
def merge(counts: list[int]) -> int:
    return sum(counts)


@workflow
def chunks(records: int = 1000, chunk_size: int = 300) -> int:
    reads = make_reads(records=records)
    parts = split(reads=reads, chunk_size=chunk_size)
    counts = map_task(count, concurrency=4)(chunk=parts)
    return merge(counts=counts)
