"""The one exception type for problems the user can fix (bad paths, images, options)."""


class UserError(Exception):
    """A problem with the user's input. Command-line scripts print its message as one
    line (naming the file and the fix) and exit with status 2, without a traceback."""
