"""The compiled per-record loop (auditd_py/chain/_fast.c), built against libsodium.

Everything else is in pyproject.toml. The extension is optional: without a
compiler or libsodium's headers the install still succeeds and auditd-py runs
its pure-Python loop (``auditd-py --version`` says which one is active).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "auditd_py.chain._fast",
            ["auditd_py/chain/_fast.c"],
            libraries=["sodium"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
