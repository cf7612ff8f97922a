"""Example pipeline: lint and test in parallel, build after both, package and report.

Run it with `nexus run release` from this folder (or `nexus -c examples/pipeline run release`).
"""

from nexus_core import config, env, run, task, timestamp

config(parallel_limit=4)


@task
def clean():
    """Remove the previous build output."""
    run("rm -rf build && mkdir -p build")


@task(deps=[clean])
def lint():
    """Check the sources (in parallel with the tests)."""
    run("python3 -m py_compile src/app.py")
    run("grep -q 'def main' src/app.py")


@task(deps=[clean])
def unit_tests():
    """Run the unit tests (in parallel with lint)."""
    run("python3 -c 'import sys; sys.path.insert(0, \"src\"); import app; assert app.add(2, 3) == 5'")
    run("sleep 0.2 && echo unit tests passed")


@task(deps=[clean])
def docs():
    """Render the docs page (in parallel with lint and tests)."""
    run("sed 's/VERSION/" + env("VERSION", "dev") + "/' src/README.in > build/README.txt")


@task(deps=[lint, unit_tests, docs])
def build():
    """Package the application."""
    run("cp src/app.py build/ && tar -czf build/app.tar.gz -C build app.py README.txt")
    run("echo built at " + timestamp(), retries=2, retry_delay=0.5)


@task(deps=[build])
def release():
    """Print what would be shipped."""
    run("ls -l build/app.tar.gz")
    run("tar -tzf build/app.tar.gz")
