"""S3: the boto3 client run in worker threads (client.py) and the outbox job that uploads a finished
recording segment, resumably (upload.py)."""

from edge_agent.s3.client import S3Client, S3Failure
from edge_agent.s3.upload import KIND_UPLOAD, UploadHandler

__all__ = ["KIND_UPLOAD", "S3Client", "S3Failure", "UploadHandler"]
