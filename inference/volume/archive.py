"""Safe unpacking of an uploaded zip (a DICOM series folder) into memory.

Nothing is written to disk. Member names are checked for path traversal even though we never
extract to a path, because the names travel on into messages and, later, exports.
"""

from __future__ import annotations

import io
import logging
import zipfile
import zlib
from pathlib import PurePosixPath

from core.errors import EmptyInput, UnsafeArchive, UnsupportedFormat
from inference.volume.nifti import human_bytes

log = logging.getLogger(__name__)

_READ_CHUNK = 1024 * 1024


def _is_unsafe(name: str) -> bool:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):  # POSIX root, UNC, C:
        return True
    parts = name.replace("\\", "/").split("/")
    return any(part == ".." for part in parts)


def _is_skipped(info: zipfile.ZipInfo) -> bool:
    """Folders, macOS resource forks and hidden files (.DS_Store...) carry no images."""
    if info.is_dir():
        return True
    parts = [p for p in PurePosixPath(info.filename.replace("\\", "/")).parts if p]
    return any(part == "__MACOSX" or part.startswith(".") for part in parts)


def unpack_zip(
    data: bytes,
    *,
    max_members: int = 2000,
    max_total_bytes: int,
    max_member_bytes: int,
) -> list[tuple[str, bytes]]:
    """The zip's files as (member name, bytes), in archive order, without folders or dotfiles.

    Raises:
        UnsafeArchive: path traversal, too many members, or members too large (declared or actual).
        UnsupportedFormat: not a zip, or password-protected members.
        CorruptImage: a damaged member.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise UnsupportedFormat(f"The upload is not a readable zip archive ({exc}).") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > max_members:
            raise UnsafeArchive(
                f"The zip holds {len(infos)} entries, more than the {max_members} allowed. Zip one "
                "series folder at a time."
            )
        wanted = _checked_members(infos, max_total_bytes, max_member_bytes)
        files: list[tuple[str, bytes]] = []
        total = 0
        for info in wanted:
            content = _read_member(archive, info, max_member_bytes)
            total += len(content)
            if total > max_total_bytes:
                raise UnsafeArchive(
                    f"The zip unpacks to more than {human_bytes(max_total_bytes)} (stopped at {info.filename}); "
                    "upload a single series."
                )
            files.append((info.filename, content))
    if not files:
        raise EmptyInput("The zip holds no files (only folders or hidden files).")
    log.info("Unpacked %d file(s), %s, from a zip", len(files), human_bytes(total))
    return files


def _checked_members(
    infos: list[zipfile.ZipInfo], max_total_bytes: int, max_member_bytes: int
) -> list[zipfile.ZipInfo]:
    """Refuse from the central directory alone, before anything is inflated."""
    wanted = []
    declared_total = 0
    for info in infos:
        if _is_unsafe(info.filename):
            raise UnsafeArchive(
                f"The zip member {info.filename!r} points outside the archive (absolute path or '..'); "
                "the zip was refused. Create the zip again from the series folder."
            )
        if _is_skipped(info):
            continue
        if info.flag_bits & 0x1:
            raise UnsupportedFormat(f"The zip member {info.filename} is password-protected; upload an unencrypted zip.")
        if info.file_size > max_member_bytes:
            raise UnsafeArchive(
                f"The zip member {info.filename} declares {human_bytes(info.file_size)} unpacked, over the "
                f"{human_bytes(max_member_bytes)} limit for one file."
            )
        declared_total += info.file_size
        if declared_total > max_total_bytes:
            raise UnsafeArchive(
                f"The zip declares more than {human_bytes(max_total_bytes)} unpacked (reached at "
                f"{info.filename}); upload a single series."
            )
        wanted.append(info)
    return wanted


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_member_bytes: int) -> bytes:
    # Read in bounded chunks: the declared size may lie, and a member must not inflate unchecked.
    chunks: list[bytes] = []
    size = 0
    try:
        with archive.open(info) as member:
            while True:
                chunk = member.read(_READ_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_member_bytes:
                    raise UnsafeArchive(
                        f"The zip member {info.filename} unpacks to more than the "
                        f"{human_bytes(max_member_bytes)} limit for one file."
                    )
                chunks.append(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise UnsafeArchive(
            f"The zip member {info.filename} is damaged or does not match the size its header declares "
            f"({exc}); create the zip again."
        ) from None
    except NotImplementedError as exc:
        raise UnsupportedFormat(
            f"The zip member {info.filename} uses a compression method this tool cannot unpack ({exc}); "
            "create the zip again with standard (deflate) compression."
        ) from None
    if size != info.file_size:
        raise UnsafeArchive(
            f"The zip member {info.filename} unpacks to {size} bytes but its header declares "
            f"{info.file_size}; create the zip again."
        )
    return b"".join(chunks)
