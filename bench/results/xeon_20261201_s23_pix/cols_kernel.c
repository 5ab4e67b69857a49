#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "nn_internal.h"
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
static float *fa(size_t n,float lo){float*p=aligned_alloc(64,(n*4+63)/64*64);for(size_t e=0;e<n;e++)p[e]=lo+(float)rand()/RAND_MAX;return p;}
int main(void){
  size_t B=64,d=784,K=20,L=9,W=K*(L+1);
  float *X=fa(B*d,-.5f),*F=fa(B*W,-.5f),*S2=fa(B*K,-.5f),*U=fa(K*L*d,-.5f),*mu=fa(K*d,-.5f),*sg=fa(K*d,.5f),*s2=fa(K*d,0),*muW=fa(W*d,0),*dal=fa(K*L,-.5f);
  double acc[400];
  float *XT=fa(64*d,0); float *C=fa(B*(W+K),0);
  struct {size_t k0,k1,c0,c1;} cs[]={{0,10,0,784},{10,20,0,784},{0,20,0,384},{0,20,384,784},{0,20,0,400},{0,20,400,784}};
  for(int rr=0;rr<3;rr++) for(int c=0;c<6;c++){
    double best=1e9;
    for(int r=0;r<5;r++){double t0=now();for(int q=0;q<500;q++)gmf_nn_kern_tn_update_cols(B,d,cs[c].c0,cs[c].c1,L,cs[c].k0,cs[c].k1,X,d,F,W,S2,K,U,mu,sg,s2,muW,dal,1e-6f,1e-6f,1e-6f,acc);double t=(now()-t0)/500;if(t<best)best=t;}
    printf("bwd k[%zu,%zu) c[%zu,%zu): %.1f us\n",cs[c].k0,cs[c].k1,cs[c].c0,cs[c].c1,1e6*best);
  }
  /* forward: comp split 10 comps x 784 vs 20 comps x 392 */
  for(int rr=0;rr<2;rr++){
   double b1=1e9,b2=1e9;
   for(int r=0;r<5;r++){double t0=now();for(int q=0;q<500;q++){gmf_nn_kern_xt(B,100,d,XT,0,muW,d,C,W,0);gmf_nn_kern_xt(B,10,d,XT,0,s2,d,C,K,1);}double t=(now()-t0)/500;if(t<b1)b1=t;}
   for(int r=0;r<5;r++){double t0=now();for(int q=0;q<500;q++){gmf_nn_kern_xt(B,200,392,XT,0,muW,d,C,W,0);gmf_nn_kern_xt(B,20,392,XT,0,s2,d,C,K,1);}double t=(now()-t0)/500;if(t<b2)b2=t;}
   printf("fwd comps(110 x 784) %.1f us, pixels(220 x 392) %.1f us\n",1e6*b1,1e6*b2);
  }
  return 0;}
