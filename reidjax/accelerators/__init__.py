"""Compiling for accelerators without one: compile-only TPU and GPU devices and the chips'
published peaks (`targets`), the ahead-of-time compile of the train and eval steps (`aot`),
the HBM bytes of a compiled module (`hlo_bytes`)."""
