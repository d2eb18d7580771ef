"""What every process shares: the device mesh and shardings (`sharding`), the paths of a run
folder and file I/O on local disks and buckets (`workdir`, `workdir_io`), and the
comparison of two parameter trees' names and shapes (`param_structure`)."""
