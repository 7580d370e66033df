"""The one exception type that carries a message meant for a person."""


class UserError(Exception):
    """Bad input from the user: a file, folder or option the program cannot use.

    The message is one sentence saying what is wrong, with which file, and what to do.
    The CLI prints it without a traceback and exits non-zero; the editor shows it in a dialog.
    """
