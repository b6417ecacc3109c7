"""The built-in job types. Importing this package registers all four in `jobtypes.REGISTRY`:

- `image_resize`: resize an image fetched from a URL or read from the storage root;
- `email_send`: send one message over SMTP (`SMTP_URL`);
- `data_export`: stream jobs or events matching a filter to CSV or JSON Lines;
- `file_process`: checksum, gzip or count the lines of a file under the storage root.
"""

from workers.handlers import data_export, email_send, file_process, image_resize

__all__ = ["data_export", "email_send", "file_process", "image_resize"]
