"""``python -m wfcli``: the ``wf`` command line."""

from wfcli.cli import main

if __name__ == "__main__":
    main()
