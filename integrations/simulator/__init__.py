"""The partner simulator: real HTTP servers on 127.0.0.1 that behave like our WMS, ERP and two couriers.

Each server accepts requests in its partner's own format, checks our signature on them (401 when wrong), and
calls our webhooks back, signed the partner's way and in its own vocabulary, after realistic delays:

- WMS ``POST /pick-lists`` → one ``pick.confirmed`` webhook per pick list (the lots we asked for);
- SwiftShip ``POST /v1/shipments`` → a tracking number, then ``InfoReceived``, ``InTransit``, ``OutForDelivery``,
  ``Delivered`` (Standard Webhooks, signed with the ``standardwebhooks`` library);
- ParcelPost ``POST /v2/shipments`` → a tracking code, then ``pre_transit``, ``in_transit``,
  ``out_for_delivery``, ``delivered`` (``X-ParcelPost-Signature``);
- ERP: a stub that takes any JSON ``POST`` (202) and records it.

Each can be told to misbehave, on the command line or at ``/_simulator`` on its own port (``GET`` shows the
state and counts, ``POST`` a JSON object changes it): ``slow`` (seconds before answering), ``fail_rate``
(fraction answered 503), ``down_for`` (seconds answering 503 to everything), ``duplicates`` (every webhook
sent twice with the same id), ``out_of_order`` (the last two updates swapped), ``unknown_status`` (a word
without a vocabulary row first), ``delay`` ([min, max] seconds between updates).

The simulator is a partner, not part of us: it signs with its own code and the partner libraries, not with
our adapters, so a test through it proves both sides agree.
"""

from integrations.simulator.servers import Behaviour, Simulator

__all__ = ["Behaviour", "Simulator"]
