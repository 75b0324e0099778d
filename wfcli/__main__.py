"""``python -m wfcli``: the ``wf`` command line."""

from wfcli.cli.commands import main

if __name__ == "__main__":
    main()
