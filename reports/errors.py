"""The one error the report layer raises: a message for the user, as it is."""


class ReportError(Exception):
    """Bad input to a report (an unknown run id, a filter matching nothing, a bad price
    file). The CLI prints the message on one line and exits with code 2."""
