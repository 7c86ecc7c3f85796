"""The jitter bench's UDP receiver process: subject names from packets, and arrival times end to end."""

from __future__ import annotations

import math
import socket

import numpy as np

from facecast.bench.livelink_bench import _Receiver
from facecast.bench.udp_receiver import subject_of
from facecast.protocol.livelink import encode_frame


def test_subject_of_reads_the_subject_name_and_refuses_anything_else() -> None:
    packet = encode_frame("facecast:顔", "顔", 7, np.zeros(61, np.float32))
    assert subject_of(packet) == "顔"
    assert subject_of(b"stop") is None
    assert subject_of(bytes([5]) + packet[1:]) is None  # another packet version
    assert subject_of(packet[:12]) is None  # cut inside the names
    assert subject_of(packet[:1] + b"\xff\xff\xff\xff" + packet[5:]) is None  # a negative length


async def test_the_receiver_process_timestamps_every_packet_per_subject() -> None:
    receiver = await _Receiver.start()
    address = ("127.0.0.1", receiver.port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for k in range(3):
            for name in ("a", "Ö"):
                sock.sendto(encode_frame(f"dev:{name}", name, k, np.zeros(61, np.float32)), address)
        sock.sendto(b"not a packet", address)
    arrivals = await receiver.stop()
    assert set(arrivals) == {"a", "Ö"}
    for received, stamped in arrivals.values():
        assert len(received) == len(stamped) == 3
        assert received == sorted(received)
        assert all(math.isnan(t) for t in stamped) or stamped == sorted(stamped)
