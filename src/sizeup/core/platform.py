"""Cloud platforms as frozen data: billing rules, spot behaviour, storage/egress prices, instances.

Built by `sizeup.schema.PlatformFile.to_core()` from catalog/data/platforms/<id>.yaml. PURE: no I/O.
`Platform.offers(gpu_id)` turns instances x price kinds into `sizeup.core.cost.Offer`s (prices per INSTANCE hour).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from sizeup.core.cost import Offer
from sizeup.errors import SizeupError

PRICE_KINDS = ("on-demand", "spot", "reserved", "reserved-3y")


@dataclass(frozen=True)
class InstancePrice:
    kind: str  # on-demand | spot | reserved (1 year) | reserved-3y
    usd_per_hour: float  # per INSTANCE
    as_of: str
    source: str
    region: str = ""
    note: str = ""


@dataclass(frozen=True)
class Instance:
    id: str
    gpu_id: str
    gpus: int
    prices: tuple[InstancePrice, ...]
    inter_node_bytes_per_s: float | None = None  # per GPU, one direction; None = the GPU default
    inter_node_source: str = ""
    note: str = ""

    def price(self, kind: str) -> InstancePrice | None:
        kind = kind.replace("_", "-")
        return next((p for p in self.prices if p.kind == kind), None)


@dataclass(frozen=True)
class Platform:
    id: str
    name: str
    kind: str
    billing_increment_s: float
    min_billing_s: float
    billing_source: str
    spot_available: bool
    preemption_rate_per_hour: float
    preemption_source: str
    spot_notice_s: float
    spot_notice_source: str
    restart_s: float
    restart_source: str
    block_storage_usd_per_gb_month: float
    object_storage_usd_per_gb_month: float
    storage_source: str
    egress_usd_per_gb: float
    egress_free_gb: float
    egress_source: str
    instances: tuple[Instance, ...]
    aliases: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    note: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)
    storage_price_known: bool = True
    """False when the catalog has no block-storage price for this platform: storage cost is unknown, not $0."""

    @property
    def gpu_ids(self) -> list[str]:
        return sorted({i.gpu_id for i in self.instances})

    def instance(self, instance_id: str) -> Instance:
        for inst in self.instances:
            if inst.id.lower() == str(instance_id).lower():
                return inst
        raise SizeupError(f"{self.name} has no instance {instance_id!r}; it has: "
                          f"{', '.join(i.id for i in self.instances)}")

    def offer(self, inst: Instance, price: InstancePrice) -> Offer:
        return Offer(
            platform=self.id,
            instance=inst.id,
            gpu_id=inst.gpu_id,
            gpus_per_instance=inst.gpus,
            pricing=price.kind,
            price_usd_per_hour=price.usd_per_hour,
            price_as_of=price.as_of,
            price_source=price.source,
            billing_increment_s=self.billing_increment_s,
            min_billing_s=self.min_billing_s,
            billing_source=self.billing_source,
            preemption_rate_per_hour=self.preemption_rate_per_hour if price.kind == "spot" else 0.0,
            preemption_source=self.preemption_source if price.kind == "spot" else "",
            storage_usd_per_gb_month=self.block_storage_usd_per_gb_month,
            storage_source=self.storage_source,
            storage_price_known=self.storage_price_known,
            egress_usd_per_gb=self.egress_usd_per_gb,
            egress_free_gb=self.egress_free_gb,
            egress_source=self.egress_source,
            **self._restart_fields(price.kind),
            note="; ".join(x for x in (inst.note, price.note, price.region and f"region {price.region}") if x),
        )

    def _restart_fields(self, kind: str) -> dict:
        # Offer.restart_s exists in newer core.cost; fill it only for spot, where restarts are the platform's doing
        if kind != "spot" or "restart_s" not in Offer.__dataclass_fields__:
            return {}
        return {"restart_s": self.restart_s, "restart_source": self.restart_source}

    def offers(self, gpu_id: str | None = None, pricing: str | None = None, strict: bool = True) -> list[Offer]:
        """Every (instance, price kind) for a catalog GPU id, cheapest per GPU first.

        strict: an unknown pricing kind or a GPU this platform does not rent raises SizeupError listing what exists."""
        kind = pricing.replace("_", "-").lower() if pricing else None
        if kind == "ondemand":
            kind = "on-demand"
        if kind is not None and kind not in PRICE_KINDS:
            raise SizeupError(f"unknown pricing {pricing!r}; allowed: {', '.join(PRICE_KINDS)}")
        insts = [i for i in self.instances if gpu_id is None or i.gpu_id == gpu_id]
        if not insts and strict:
            raise SizeupError(f"{self.name} does not rent GPU {gpu_id!r} in the catalog; it offers: "
                              f"{', '.join(self.gpu_ids)}. Add your own price with --catalog my-prices.yaml")
        out = [self.offer(i, p) for i in insts for p in i.prices if kind is None or p.kind == kind]
        if not out and strict:
            have = sorted({p.kind for i in insts for p in i.prices})
            raise SizeupError(f"{self.name} has no {kind} price for {gpu_id}; it has: {', '.join(have) or 'none'}")
        return sorted(out, key=lambda o: (o.price_usd_per_gpu_hour, o.instance))
