"""Entry point PlatformIO runs as ``python <tool-scons>/scons.py``.

PlatformIO normally downloads its own copy of SCons as the ``tool-scons`` package. This package
runs the ``SCons`` Python package installed in the same interpreter instead, so that a local
platform builds without network access.
"""

import sys

try:
    import SCons.Script
except ImportError:
    sys.stderr.write("error: the SCons Python package is not installed in %s; "
                     "install it with: %s -m pip install scons\n" % (sys.prefix, sys.executable))
    sys.exit(2)

if __name__ == "__main__":
    SCons.Script.main()
