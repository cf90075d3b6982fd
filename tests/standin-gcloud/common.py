"""What every group of standin-gcloud shares: its home, state, call log, auth, flags, errors.

Environment (set by the tests):
  STANDIN_GCLOUD_HOME      directory holding state.json, calls.jsonl and storage/ (required)
  STANDIN_GCLOUD_ACCOUNT   the active account; unset and no `account` in state.json means
                           "not authenticated", as on a machine where nobody ran `gcloud auth login`
"""
import fcntl
import json
import os
import sys


class GcloudError(Exception):
    """An error printed the way gcloud prints it: `ERROR: (gcloud.GROUP.CMD) MESSAGE`."""

    def __init__(self, command, message, code=1):
        super().__init__(message)
        self.command = command
        self.message = message
        self.code = code

    def report(self):
        print(f"ERROR: ({self.command}) {self.message}", file=sys.stderr)
        return self.code


class Context:
    def __init__(self, home, argv):
        self.home = home
        os.makedirs(home, exist_ok=True)
        self._lock = None
        self.log_call(argv)

    @classmethod
    def from_env(cls, argv):
        home = os.environ.get("STANDIN_GCLOUD_HOME")
        if not home:
            print("standin-gcloud: STANDIN_GCLOUD_HOME is not set (this is a test stand-in)", file=sys.stderr)
            sys.exit(2)
        return cls(home, argv)

    def path(self, *parts):
        return os.path.join(self.home, *parts)

    def log_call(self, argv):
        """One JSON line per call: tests count `run deploy` calls from this file."""
        with open(self.path("calls.jsonl"), "a") as f:
            f.write(json.dumps({"argv": argv}) + "\n")

    def calls(self):
        with open(self.path("calls.jsonl")) as f:
            return [json.loads(line)["argv"] for line in f if line.strip()]

    def account(self):
        return os.environ.get("STANDIN_GCLOUD_ACCOUNT") or self.load().get("account")

    def require_auth(self, command):
        if not self.account():
            raise GcloudError(
                command,
                "You do not currently have an active account selected.\n"
                "Please run:\n\n  $ gcloud auth login\n\nto obtain new credentials.\n\n"
                "If you have already logged in with a different account, run:\n\n"
                "  $ gcloud config set account ACCOUNT\n\n"
                "to select an already authenticated account to use.",
            )

    def load(self):
        """The whole state (a dict); call inside `with ctx.locked():` when you will save."""
        try:
            with open(self.path("state.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def save(self, state):
        tmp = self.path("state.json.tmp")
        with open(tmp, "w") as f:
            json.dump(state, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path("state.json"))

    def locked(self):
        """An exclusive lock over state.json for a read-modify-write (lifeos may run tasks in parallel)."""
        return _Lock(self.path("state.lock"))

    def usage_error(self, command, message):
        # argparse-style errors exit 2 in gcloud.
        raise GcloudError(command, message, code=2)


class _Lock:
    def __init__(self, path):
        self.path = path

    def __enter__(self):
        self.f = open(self.path, "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


class Flags:
    """gcloud-style flag parsing that rejects unknown flags with gcloud's message.

    `flags` maps each accepted flag to True (takes a value: `--f v` or `--f=v`) or False (a switch).
    Global flags (`--project`, `--format`, `--quiet`, `--verbosity`, `--account`) are always accepted.
    """

    GLOBAL = {"--project": True, "--format": True, "--quiet": False, "-q": False,
              "--verbosity": True, "--account": True}

    def __init__(self, argv, ctx, command, flags):
        accepted = dict(self.GLOBAL)
        accepted.update(flags)
        self.values = {}
        self.positional = []
        i = 0
        while i < len(argv):
            arg = argv[i]
            if arg.startswith("-") and arg != "-":
                name, eq, value = arg.partition("=")
                if name not in accepted:
                    raise GcloudError(command, f"unrecognized arguments: {arg}", code=2)
                if accepted[name]:
                    if not eq:
                        i += 1
                        if i >= len(argv):
                            raise GcloudError(command, f"argument {name}: expected one argument", code=2)
                        value = argv[i]
                    self.values[name] = value
                else:
                    if eq:
                        raise GcloudError(command, f"argument {name}: ignored explicit argument '{value}'", code=2)
                    self.values[name] = True
            else:
                self.positional.append(arg)
            i += 1

    def get(self, name, default=None):
        return self.values.get(name, default)

    def has(self, name):
        return name in self.values


def print_json(value):
    print(json.dumps(value, indent=2, sort_keys=True))
