"""The layout shows the design: each folder imports only the folders below it
(README "Layout"), no import cycle exists, no project import hides inside a
function, and no module outgrows ~500 lines without saying why at its top."""

import ast
import os

import tensorflow as tf

from tests import helpers

# A package may import its own modules and packages of a lower rank.
RANKS = {
    "settings": 0, "input": 1, "models": 1, "distribute": 1, "algorithms": 2, "training": 3,
    "inference": 4, "evaluation": 5, "pipeline": 6, "launch": 7,
}
MAX_LINES = 550  # ~500, with room for a docstring.


def _modules():
  """{module name: path} of every library module."""
  out = {}
  for package in RANKS:
    for name in sorted(os.listdir(os.path.join(helpers.REPO_ROOT, package))):
      if name.endswith(".py"):
        module = package if name == "__init__.py" else f"{package}.{name[:-3]}"
        out[module] = os.path.join(helpers.REPO_ROOT, package, name)
  return out


def _project_imports(path, modules):
  """[(imported module, inside a function?)] of the project's own modules
  (`from package import module` names the module, not the package)."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read())
  functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef,
                                                           ast.AsyncFunctionDef))]
  nested = {id(n) for f in functions for n in ast.walk(f) if n is not f}
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
               else node.module for a in node.names]
    else:
      continue
    for name in names:
      if name.split(".")[0] in RANKS:
        out.append((name, id(node) in nested))
  return out


class LayoutTest(tf.test.TestCase):

  def test_packages_import_only_lower_layers_and_never_inside_functions(self):
    modules = _modules()
    for module, path in modules.items():
      package = module.split(".")[0]
      for name, in_function in _project_imports(path, modules):
        target = name.split(".")[0]
        self.assertFalse(in_function, f"{module} imports {name} inside a function")
        self.assertTrue(target == package or RANKS[target] < RANKS[package],
                        f"{module} ({package}, rank {RANKS[package]}) imports {name} "
                        f"({target}, rank {RANKS[target]})")

  def test_no_import_cycle(self):
    modules = _modules()
    graph = {m: sorted({n for n, _ in _project_imports(p, modules) if n in modules and n != m})
             for m, p in modules.items()}
    state = {}

    def visit(m, stack):
      state[m] = "open"
      for n in graph[m]:
        if state.get(n) == "open":
          self.fail(f"import cycle: {' -> '.join(stack[stack.index(n):] + [n])}")
        if n not in state:
          visit(n, stack + [n])
      state[m] = "done"

    for m in graph:
      if m not in state:
        visit(m, [m])

  def test_long_modules_say_why(self):
    for module, path in _modules().items():
      with open(path, encoding="utf-8") as f:
        text = f.read()
      if text.count("\n") > MAX_LINES:
        head = text[:text.find('"""', 3)]
        self.assertIn("Why one module", head, f"{module} has {text.count(chr(10))} lines")


if __name__ == "__main__":
  tf.test.main()
