/* placeholder */
#ifndef NNMPC_Q8_H
#define NNMPC_Q8_H
#define NNMPC_Q8_VERSION 1
#endif
