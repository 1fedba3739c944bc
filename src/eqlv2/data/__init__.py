"""Getting the datasets and weights the workflow needs: verified downloads and the table of known files."""

from eqlv2.data.download import ChecksumError, DownloadError, download, sha256sum, unpack_zip

__all__ = ["ChecksumError", "DownloadError", "download", "sha256sum", "unpack_zip"]
