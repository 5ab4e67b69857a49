#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "nn_internal.h"
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
static float *fa(size_t n,float lo){float*p=aligned_alloc(64,(n*4+63)/64*64);for(size_t e=0;e<n;e++)p[e]=lo+(float)rand()/RAND_MAX;return p;}
int main(void){ size_t B=64,d=784,K=20,L=9,W=K*(L+1);
  float *X=fa(B*d,-.5f),*F=fa(B*W,-.5f),*S2=fa(B*K,-.5f),*U=fa(K*L*d,-.5f),*mu=fa(K*d,-.5f),*sg=fa(K*d,.5f),*s2=fa(K*d,0),*muW=fa(W*d,0),*dal=fa(K*L,-.5f); double acc[400];
  struct {size_t k0,k1;} cs[]={{0,20},{0,10},{10,20}};
  for(int c=0;c<3;c++){ double best=1e9;
    for(int r=0;r<7;r++){double t0=now();for(int q=0;q<300;q++)gmf_nn_kern_tn_update(B,d,L,cs[c].k0,cs[c].k1,X,d,F,W,S2,K,U,mu,sg,s2,muW,dal,1e-6f,1e-6f,1e-6f,acc);double t=(now()-t0)/300;if(t<best)best=t;}
    printf("tn_update k[%zu,%zu) all 784 columns: %.1f us\n",cs[c].k0,cs[c].k1,1e6*best);}
  return 0;}
