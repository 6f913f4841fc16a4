"""The back-end: optimised IR -> C99 (``codegen``), the int8 lowering (``int8``) and the
per-layer cost report (``report``). It reads only the IR; it never imports a front-end."""
