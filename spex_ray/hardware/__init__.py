"""Hardware and model facts shared by every part that estimates cost: GPU and model specs
(specs.py), the roofline of a forward pass and the knee concurrency (roofline.py), and which
spec a real device or model id corresponds to (devices.py). The allocator's knee, the
simulator's timing and the SGLang engine all read them from here. No Ray, no torch."""
