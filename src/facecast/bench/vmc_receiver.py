"""A VMC (OSC over UDP) receiver for ``facecast bench``, run as its own process:
``python -m facecast.bench.vmc_receiver``, like :mod:`facecast.bench.udp_receiver` for Live Link (a receiver
thread in the pacer's process would contend for the GIL and move the arrival times it measures).

Same protocol on stdin/stdout: prints its port on a line, timestamps every datagram (the kernel's
``SO_TIMESTAMPNS`` stamp where the platform has it, else NaN; and ``time.monotonic()`` when read) until one
that is exactly ``b"stop"``, then prints ``{"subjects": {"VMC": [[monotonic...], [kernel...]]}, "other": N}``.
A datagram counts as a VMC frame when python-osc decodes it as a bundle of 52 ``/VMC/Ext/Blend/Val`` and
then exactly one ``/VMC/Ext/Blend/Apply``, last; anything else is counted in ``other``.
"""

from __future__ import annotations

import json
import sys

from .udp_receiver import receive

__all__ = ["main", "is_vmc_frame"]


def is_vmc_frame(packet: bytes) -> bool:
    """True for a whole VMC face frame: an OSC bundle with 52 blend values, then one Apply, last."""
    from pythonosc.osc_bundle import OscBundle
    from pythonosc.osc_message import OscMessage

    try:
        if not OscBundle.dgram_is_bundle(packet):
            return False
        addresses = [m.address for m in OscBundle(packet) if isinstance(m, OscMessage)]
    except Exception:  # python-osc raises its own parse errors for malformed bundles
        return False
    return (
        addresses.count("/VMC/Ext/Blend/Val") == 52
        and addresses.count("/VMC/Ext/Blend/Apply") == 1
        and addresses[-1] == "/VMC/Ext/Blend/Apply"
    )


def main() -> None:
    received = receive(65536)
    frames: list[list[float]] = [[], []]
    other = 0
    for data, mono, stamp in received:  # parsed after the run, so parsing never delays a read
        if is_vmc_frame(data):
            frames[0].append(mono)
            frames[1].append(stamp)
        else:
            other += 1
    json.dump({"subjects": {"VMC": frames}, "other": other}, sys.stdout)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
