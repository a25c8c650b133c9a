"""Benchmarks of the pipeline (bench/README.md says what each measures).

Each script is run from the repository root as a module, with argparse
flags (`--help` lists them):

    python -m bench.<script> [--results_dir=bench/results] ...

Scripts: convert_dicom, gpu_check, input_pipeline, joint_d, layout,
memorization_audit, profile_step, quality, steps_per_loop, torch_train_step,
train_step. A script imports only the modules they share, never another
script:

- report: the machine line, markdown tables, and the results files (`save`);
- timing: variants taking turns, timed hand-written loops (no TensorFlow);
- child: measurements in child processes, each a `python -m bench.<script>`
  answering one JSON line (no TensorFlow);
- loops: the training loops that train_step and gpu_check time, and a built
  trainer for steps_per_loop and joint_d;
- gpu_check_rows: the rows that gpu_check runs in its child processes;
- judges, quality_images: sample quality (classifiers trained on the real
  images) and the image figures that quality runs.
"""
