"""Where moto 5.2.5's S3 answers differ from the S3 API reference in a way the Rust SDK notices.

Imported by moto_server.py before start.
"""
from moto.s3.responses import S3Response


def get_bucket_versioning(self):
    # S3 API reference, GetBucketVersioning, "Response Syntax": the root element is
    # VersioningConfiguration, with Status only once versioning was ever set. moto 5.2.5 names it
    # GetBucketVersioningResponse, which the Rust SDK refuses to parse.
    status = self.backend.get_bucket_versioning(self.bucket_name)
    inner = f"<Status>{status}</Status>" if status else ""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{inner}</VersioningConfiguration>'
    )
    return 200, {"Content-Type": "application/xml"}, body


S3Response.get_bucket_versioning = get_bucket_versioning
