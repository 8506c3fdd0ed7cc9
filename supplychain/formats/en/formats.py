"""English date and time formats for operations staff: times to the second (audit, deliveries, movements).

Listed before Django's own locale formats (``FORMAT_MODULE_PATH``); what is not set here comes from Django's.
"""

DATETIME_FORMAT = "j M Y, H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
TIME_FORMAT = "H:i:s"
