# -*- Python -*-
# lit configuration of fmoe's compiler regression suite.

import os

import lit.formats
from lit.llvm import llvm_config

config.name = "FMOE"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.fmoe_obj_root, "test")
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py.in", "Inputs"]

config.substitutions.append(("%PATH%", config.environment["PATH"]))
config.substitutions.append(("%inputs", os.path.join(config.test_source_root, "Inputs")))
config.substitutions.append(("%examples", os.path.join(config.fmoe_src_root, "examples")))

# Checks must use every prefix they declare and keep variables in scope.
config.environment["FILECHECK_OPTS"] = "-enable-var-scope --allow-unused-prefixes=false"

llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.with_environment("PATH", config.fmoe_tools_dir, append_path=True)

tool_dirs = [config.fmoe_tools_dir, config.llvm_tools_dir]
tools = ["fmoe-opt", "fmoe-compile", "fmoe-module-check"]
llvm_config.add_tool_substitutions(tools, tool_dirs)

# Tests that run kernels need a GPU; none of the compiler tests do.
if os.path.exists("/dev/nvidia0"):
    config.available_features.add("cuda")
