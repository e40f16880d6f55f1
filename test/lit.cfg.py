# lit configuration for jsdpa: generator output, diagnostics and PTX checks.
import os
import lit.formats

config.name = "jsdpa"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".yaml", ".test"]
config.excludes = ["Inputs", "common", "runtime", "gpu", "python", "CMakeLists.txt"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.jsdpa_obj_root, "test")

config.environment["PATH"] = os.pathsep.join(
    [config.jsdpa_tools_dir, config.llvm_tools_dir, config.environment.get("PATH", os.environ["PATH"])])
for var in ("HOME", "CUDA_HOME", "JSDPA_TOOLS_DIR", "JSDPA_NVRTC_LIBRARY", "LD_LIBRARY_PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS"):
    if var in os.environ:
        config.environment[var] = os.environ[var]

config.substitutions.append(("%jsdpa-gen", os.path.join(config.jsdpa_tools_dir, "jsdpa-gen")))
config.substitutions.append(("%specs", os.path.join(config.jsdpa_src_root, "specs")))
config.substitutions.append(("%inputs", os.path.join(config.test_source_root, "gen", "Inputs")))
config.substitutions.append(("%python", config.python_executable))
