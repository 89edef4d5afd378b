"""Safe unpacking of an uploaded zip (a DICOM series folder) into memory.

Nothing is written to disk. Member names are checked for path traversal even though we never
extract to a path, because the names travel on into messages and, later, exports.
"""

from __future__ import annotations

import io
import logging
import struct
import zipfile
import zlib
from pathlib import PurePosixPath

from core.errors import EmptyInput, UnsafeArchive, UnsupportedFormat
from inference.formats import printable_name, reader_boundary
from inference.volume.nifti import human_bytes

log = logging.getLogger(__name__)

_READ_CHUNK = 1024 * 1024
# What zipfile raises on a damaged archive: a bad central directory, offsets pointing outside the
# file ("negative seek value"), a corrupt deflate stream, a short read.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    ValueError,
    OSError,
    struct.error,
    OverflowError,
)


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
    name: str = "The upload",
) -> list[tuple[str, bytes]]:
    """The zip's files as (member name, bytes), in archive order, without folders or dotfiles.

    ``name`` (the uploaded file's name) is what messages call the zip.

    Raises:
        UnsafeArchive: path traversal, too many members, or members too large (declared or actual).
        UnsupportedFormat: not a zip, or password-protected members.
        CorruptImage: a damaged member.
    """
    with reader_boundary(name, "a zip archive", "Create the zip again from the series folder."):
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except _ZIP_ERRORS:
            raise UnsupportedFormat(
                f"{name} is not a readable zip archive (its central directory is missing or damaged). "
                "Create the zip again from the series folder."
            ) from None
        with archive:
            infos = archive.infolist()
            if len(infos) > max_members:
                raise UnsafeArchive(
                    f"{name} holds {len(infos)} entries, more than the {max_members} allowed. Zip one "
                    "series folder at a time."
                )
            wanted = _checked_members(infos, max_total_bytes, max_member_bytes, name)
            files: list[tuple[str, bytes]] = []
            total = 0
            for info in wanted:
                content = _read_member(archive, info, max_member_bytes, name)
                total += len(content)
                if total > max_total_bytes:
                    raise UnsafeArchive(
                        f"{name} unpacks to more than {human_bytes(max_total_bytes)} (stopped at "
                        f"{printable_name(info.filename)}); upload a single series."
                    )
                files.append((info.filename, content))
        if not files:
            raise EmptyInput(f"{name} holds no files (only folders or hidden files).")
    log.info("Unpacked %d file(s), %s, from a zip", len(files), human_bytes(total))
    return files


def _member(name: str) -> str:
    """How a message about one member starts: 'In scan.zip, the zip member' ('The zip member' for
    the default name)."""
    return "The zip member" if name == "The upload" else f"In {name}, the zip member"


def _checked_members(
    infos: list[zipfile.ZipInfo], max_total_bytes: int, max_member_bytes: int, name: str
) -> list[zipfile.ZipInfo]:
    """Refuse from the central directory alone, before anything is inflated."""
    wanted = []
    declared_total = 0
    for info in infos:
        if _is_unsafe(info.filename):
            raise UnsafeArchive(
                f"{_member(name)} {printable_name(repr(info.filename), 120)} points outside the archive "
                "(absolute path or '..'); "
                "the zip was refused. Create the zip again from the series folder."
            )
        if _is_skipped(info):
            continue
        member = printable_name(info.filename)
        if info.flag_bits & 0x1:
            raise UnsupportedFormat(f"{_member(name)} {member} is password-protected; upload an unencrypted zip.")
        if info.file_size > max_member_bytes:
            raise UnsafeArchive(
                f"{_member(name)} {member} declares {human_bytes(info.file_size)} unpacked, over the "
                f"{human_bytes(max_member_bytes)} limit for one file."
            )
        declared_total += info.file_size
        if declared_total > max_total_bytes:
            raise UnsafeArchive(
                f"{name} declares more than {human_bytes(max_total_bytes)} unpacked (reached at "
                f"{member}); upload a single series."
            )
        wanted.append(info)
    return wanted


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_member_bytes: int, name: str) -> bytes:
    # Read in bounded chunks: the declared size may lie, and a member must not inflate unchecked.
    chunks: list[bytes] = []
    size = 0
    member_name = printable_name(info.filename)
    try:
        with archive.open(info) as member:
            while True:
                chunk = member.read(_READ_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_member_bytes:
                    raise UnsafeArchive(
                        f"{_member(name)} {member_name} unpacks to more than the "
                        f"{human_bytes(max_member_bytes)} limit for one file."
                    )
                chunks.append(chunk)
    except NotImplementedError:
        raise UnsupportedFormat(
            f"{_member(name)} {member_name} uses a compression method this tool cannot unpack; "
            "create the zip again with standard (deflate) compression."
        ) from None
    except _ZIP_ERRORS as exc:
        # zipfile's own text can quote kilobytes of the damaged directory: say what it means instead.
        raise UnsafeArchive(
            f"{_member(name)} {member_name} is damaged or does not match the size its header declares "
            f"({_zip_problem(exc)}); create the zip again."
        ) from None
    if size != info.file_size:
        raise UnsafeArchive(
            f"{_member(name)} {member_name} unpacks to {size} bytes but its header declares "
            f"{info.file_size}; create the zip again."
        )
    return b"".join(chunks)


def _zip_problem(exc: BaseException) -> str:
    text = str(exc)
    if "CRC" in text:
        return "its checksum does not match its content"
    if "File name in directory" in text:
        return "its local header does not match the central directory"
    if isinstance(exc, zlib.error):
        return "its compressed data is corrupt"
    if isinstance(exc, EOFError) or "Truncated" in text or "truncated" in text:
        return "it is cut short"
    if "seek" in text or "Bad magic number" in text:
        return "its header offset points outside the zip"
    return "its data is damaged"
