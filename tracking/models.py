"""What an actor loads once and reuses for every video: the detector and the appearance
networks (tracking/appearance.py), and what they run on, as each video's records name it."""

from __future__ import annotations

from dataclasses import dataclass

from tracking.appearance import ClassAppearance
from tracking.config import PipelineConfig
from tracking.detector import Detector


@dataclass
class Models:
    """What an actor loads once and reuses for every video."""

    detector: Detector
    embedder: ClassAppearance

    def execution(self) -> dict[str, str]:
        """What runs the video (recorded per video in the summary, the detections stage and the
        manifest): the device, each network's backend and precision, and the CPU with its ISA."""
        from tracking.inference import cpu_description

        d, e = self.detector, self.embedder
        cpu = cpu_description()
        isa = ",".join(k for k in ("avx2", "avx512", "vnni", "bf16", "amx") if cpu[k])
        nets = [("detector", d.backend, "fp16" if d.half else d.cfg.precision)]
        if e.general is not None:
            half = e.general.backend == "torch" and e.cfg.half and e.general.device.startswith("cuda")
            nets.append(("embedder", e.general.backend, "fp16" if half else e.cfg.precision))
        if e.reid is not None:
            nets.append(("reid", "openvino", "fp32 (cpu)"))
        return {"device": d.device_name, "backend": "; ".join(f"{n} {b}" for n, b, _ in nets),
                "precision": "; ".join(f"{n} {b} {p}" for n, b, p in nets), "cpu": f"{cpu['model']} [{isa}]"}

    @classmethod
    def load(cls, cfg: PipelineConfig) -> Models:
        detector = Detector(cfg.detector)
        return cls(detector, ClassAppearance(cfg.embedder, device=detector.device, names=detector.names,
                                             kept_class_ids=detector.class_ids))
