// Every pass and the pipeline are listed by --help.
// RUN: fmoe-opt --help | FileCheck %s
// CHECK-DAG: --fmoe-decompose
// CHECK-DAG: --fmoe-fuse
// CHECK-DAG: --fmoe-generate-backward
// CHECK-DAG: --fmoe-lower-to-runtime
// CHECK-DAG: --fmoe-place-experts
// CHECK-DAG: --lower-moe
