"""The console's date formats, for every page (settings.FORMAT_MODULE_PATH): ISO-like, with
seconds and the time zone, so one moment reads the same in the queue, the job page and the
audit log. The relative form ("3 min ago") comes from core.templatetags.console."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
