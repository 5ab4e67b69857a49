"""scriptargs.py -- the command-line convention of the project's Python scripts (tools/*.py,
bench/*.py), in one place; the same as the gmflow CLI's and the shell scripts':

  -h / --help          the help on stdout, exit status 0;
  a usage error        "PROG: MESSAGE" naming the bad option or value on stderr, then the usage
                       lines, exit status 2.

Two forms:

  script_cli(doc, prog) -> (usage_exit, positional)
      for scripts whose help is their docstring (with a "usage:" paragraph) and whose arguments
      are positional: usage_exit(msg=None) and positional(argv, options=()) (the arguments that
      are not options; -h / --help anywhere prints the help; an option not in OPTIONS is an
      error);
  ArgumentParser
      argparse with that error convention (argparse's own prints the usage first and does not
      name an unknown option before a missing argument).

tools/ scripts import it directly (a script's folder is on sys.path); bench/ scripts put tools/
on sys.path first.  Nothing heavy is imported here, so --help stays instant.
"""
import argparse
import sys


def script_cli(doc, prog):
    """usage_exit and positional for a script with docstring DOC, named PROG in messages."""

    def usage_exit(msg=None):
        if msg is None:
            print(doc.strip())
            sys.exit(0)
        lines = doc.strip().splitlines()
        start = next(i for i, ln in enumerate(lines) if ln.lstrip().lower().startswith("usage:"))
        end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
        print(f"{prog}: {msg}", file=sys.stderr)
        print("\n".join(lines[start:end]), file=sys.stderr)
        sys.exit(2)

    def positional(argv, options=()):
        pos = []
        for a in argv:
            if a in ("-h", "--help"):
                usage_exit()
            if a.startswith("-") and len(a) > 1 and a not in options:
                usage_exit(f"unknown option '{a}'")
            if a not in options:
                pos.append(a)
        return pos

    return usage_exit, positional


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the usage-error convention above: "PROG: MESSAGE" on stderr, then the usage,
    exit status 2; an unknown option is named before a missing argument."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: {message}\n")
        self.print_usage(sys.stderr)
        sys.exit(2)

    def parse_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        known = set(self._option_string_actions)
        for act in self._actions:
            if isinstance(act, argparse._SubParsersAction):
                for sp in act.choices.values():
                    known |= set(sp._option_string_actions)
        for a in args:
            if a == "--":
                break
            opt = a.split("=", 1)[0]
            if (a.startswith("-") and len(a) > 1 and not a[1:2].isdigit() and a[1:2] != "."
                    and not any(k.startswith(opt) for k in known)):
                self.error(f"unknown option '{opt}'")
        return super().parse_args(args, namespace)
