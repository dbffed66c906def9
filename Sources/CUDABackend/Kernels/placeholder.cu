extern "C" __global__ void placeholder_kernel() {}
