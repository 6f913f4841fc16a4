"""Link: the serial protocol (framing, the messages generated from the schema and their
generator), the device client over pyserial, the QEMU board runner and port discovery."""
