"""Build: board files, cross builds of the firmware against a board's budget, ELF sizes and size
checks, PlatformIO projects, and the Arduino-style library export."""
